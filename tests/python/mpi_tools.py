"""What the tests that run lethe under mpirun share (test_mpi.py, test_mpi_unlearn.py)."""
import subprocess


def mpirun(np_):
    """The launcher's words for np_ processes; none for one (lethe runs as a plain process)."""
    return ["mpirun", "-q", "--oversubscribe", "-np", str(np_)] if np_ > 1 else []


def run_lethe(lethe, np_, *args, check=True):
    """lethe ARGS on np_ processes; with check, a failure raises with its stderr."""
    p = subprocess.run(mpirun(np_) + [lethe, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"np {np_} lethe {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def assert_reduction_bytes(test, comm, processes):
    """The `communication` counters of --json against the fixed-order reduce-scatter +
    allgather (docs/distributed.md): an allreduce of N values moves N + (P − 2)·⌈N/P⌉ of
    them out of rank 0 and as many in, i.e. between (2P − 2)/P·N and that + P − 2."""
    P, values, calls = processes, comm["allreduce_values"], comm["allreduces"]
    test.assertEqual(comm["processes"], P)
    test.assertGreaterEqual(P * comm["bytes_sent"], 8 * (2 * P - 2) * values)
    test.assertLessEqual(P * comm["bytes_sent"], 8 * ((2 * P - 2) * values + P * (P - 2) * calls))
    test.assertEqual(comm["bytes_received"], comm["bytes_sent"])
