// io/ledger.h: the hash chain, the head check, a half-written line, the certificate hook.
#include <gtest/gtest.h>

#include "common/error.h"
#include "io/ledger.h"
#include "io/sha256.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

std::string Hex(char c) { return std::string(64, c); }

LedgerEntry Request(const std::string& parent, const std::string& child, int64_t id) {
  LedgerEntry e;
  e.utc = "2026-11-30T00:00:00Z";
  e.method = "newton";
  e.solver = "cg";
  e.ids = {id};
  e.parent = {"p.safetensors", parent};
  e.child = {"c.safetensors", child};
  return e;
}

TEST(Ledger, ChainOfThree) {
  TempDir tmp;
  const std::string path = tmp.Path("l.jsonl");
  EXPECT_FALSE(LedgerHead(path));  // absent: an empty ledger
  const LedgerEntry a = AppendLedger(path, Request(Hex('a'), Hex('b'), 3));
  const LedgerEntry b = AppendLedger(path, Request(Hex('b'), Hex('c'), 7));
  LedgerEntry third = Request(Hex('c'), Hex('d'), 9);
  third.certificate = CertificateState{1.5e-3, 0.25, 1.0, 1e-5, 10};
  AppendLedger(path, third);
  EXPECT_EQ(a.seq, 1);
  EXPECT_EQ(a.prev, LedgerGenesis());
  EXPECT_EQ(b.prev, a.hash);
  const LedgerRead r = ReadLedger(path);
  ASSERT_TRUE(r.ok()) << r.problem;
  ASSERT_EQ(r.entries.size(), 3u);
  EXPECT_EQ(r.entries[1].hash, b.hash);
  EXPECT_EQ(r.entries[2].ids, std::vector<int64_t>{9});
  ASSERT_TRUE(r.entries[2].certificate);
  EXPECT_EQ(r.entries[2].certificate->beta, 1.5e-3);
  EXPECT_EQ(r.entries[2].certificate->epsilon_spent, 0.25);
  EXPECT_FALSE(r.entries[0].certificate);
  EXPECT_EQ(LedgerHead(path)->child.sha256, Hex('d'));
  // The documented hash: sha256(prev + "\n" + the line without "hash").
  const std::string text = ReadBytes(path);
  const std::string line1 = text.substr(0, text.find('\n'));
  const std::string body = line1.substr(0, line1.find(",\"hash\"")) + line1.substr(line1.find(",\"lethe_ledger\""));
  EXPECT_EQ(Sha256Hex(LedgerGenesis() + "\n" + body), a.hash);
}

TEST(Ledger, RefusesAModelThatIsNotTheHead) {
  TempDir tmp;
  const std::string path = tmp.Path("l.jsonl");
  AppendLedger(path, Request(Hex('a'), Hex('b'), 3));
  const std::string before = ReadBytes(path);
  try {
    AppendLedger(path, Request(Hex('a'), Hex('e'), 4));  // a fork from the first parent
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path + ": p.safetensors (sha256 " + Hex('a') + ") is not the ledger's head"), std::string::npos) << m;
    EXPECT_NE(m.find(Hex('b')), std::string::npos) << m;
  }
  EXPECT_THROW(CheckLedgerHead(path, "m", Hex('a')), Error);
  CheckLedgerHead(path, "m", Hex('b'));
  CheckLedgerHead(tmp.Path("fresh.jsonl"), "m", Hex('a'));  // a fresh ledger takes any model
  EXPECT_EQ(ReadBytes(path), before);
}

TEST(Ledger, EveryTruncationOfTheLastLineIsRefused) {
  // A crash mid-append leaves a prefix of the line: never read as valid, whatever its length.
  TempDir tmp;
  const std::string path = tmp.Path("l.jsonl");
  AppendLedger(path, Request(Hex('a'), Hex('b'), 3));
  const size_t one = ReadBytes(path).size();
  AppendLedger(path, Request(Hex('b'), Hex('c'), 4));
  const std::string whole = ReadBytes(path);
  for (size_t cut = one + 1; cut < whole.size(); ++cut) {
    WriteBytes(path, whole.substr(0, cut));
    const LedgerRead r = ReadLedger(path);
    EXPECT_EQ(r.bad_line, 2) << cut;
    EXPECT_EQ(r.entries.size(), 1u);
    EXPECT_THROW(AppendLedger(path, Request(Hex('b'), Hex('c'), 4)), Error) << cut;
    EXPECT_EQ(ReadBytes(path), whole.substr(0, cut));  // nothing appended after it
  }
}

TEST(Ledger, EveryByteFlipIsDetected) {
  TempDir tmp;
  const std::string path = tmp.Path("l.jsonl");
  AppendLedger(path, Request(Hex('a'), Hex('b'), 3));
  AppendLedger(path, Request(Hex('b'), Hex('c'), 4));
  const std::string whole = ReadBytes(path);
  for (size_t i = 0; i < whole.size(); ++i) {
    std::string bad = whole;
    bad[i] = bad[i] == '1' ? '2' : '1';
    WriteBytes(path, bad);
    EXPECT_FALSE(ReadLedger(path).ok()) << "byte " << i;
  }
}

}  // namespace
}  // namespace lethe::io
