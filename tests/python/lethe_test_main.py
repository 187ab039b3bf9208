"""The command-line runner every tests/python script shares.

    /usr/bin/python3 tests/python/test_X.py --lethe PATH/TO/lethe [unittest names...]

Parses --lethe (tests that need the binary skip when it is absent), runs the module's tests
or the named ones, and ends with the line "N passed, N failed, N skipped" that CI reads.
"""
import argparse
import os
import sys
import unittest


def run_tests(module_name):
    """Runs the tests of `module_name`, whose global LETHE receives --lethe (or None).
    Returns the exit code."""
    module = sys.modules[module_name]
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").splitlines()[0])
    parser.add_argument("--lethe", help="path to the lethe binary (tests needing it skip if absent)")
    args, rest = parser.parse_known_args()
    module.LETHE = os.path.abspath(args.lethe) if args.lethe else None
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromNames(rest, module) if rest else loader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1
