// The deletion ledger as `lethe inspect --ledger` shows it for one model (cmd_ledger.cc).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lethe::cli {

// The ledger's lines that led to the model with hash `model_sha256` (lines 1 … the one
// whose child it is), as JSON (an array; empty when the model is not in the ledger).
// Throws lethe::Error when the ledger's chain is broken.
nlohmann::json LedgerHistory(const std::string& ledger_path, const std::string& model_sha256);
// The same as a table on stdout.
void PrintLedgerHistory(const std::string& ledger_path, const std::string& model_sha256);

}  // namespace lethe::cli
