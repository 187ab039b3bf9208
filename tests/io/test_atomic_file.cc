#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "io/atomic_file.h"
#include "test_util.h"

namespace lethe::io {
namespace {

using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

TEST(AtomicFile, CommitWritesAndLeavesNoTemp) {
  TempDir tmp;
  const std::string path = tmp.Path("out.bin");
  {
    AtomicFile f(path);
    EXPECT_EQ(f.path(), path);
    f.Write("hello ");
    const std::string big(10 << 20, 'x');  // large enough for partial writes to matter
    f.Write(big.data(), big.size());
    EXPECT_FALSE(std::filesystem::exists(path));  // nothing visible before Commit
    f.Commit();
  }
  EXPECT_EQ(std::filesystem::file_size(path), 6u + (10 << 20));
  EXPECT_EQ(ReadBytes(path).substr(0, 7), "hello x");
  EXPECT_EQ(tmp.List(), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, ExceptionLeavesNoTempAndNoTarget) {
  TempDir tmp;
  const std::string path = tmp.Path("out.bin");
  EXPECT_THROW(
      {
        AtomicFile f(path);
        f.Write("partial");
        throw std::runtime_error("failed half way");
      },
      std::runtime_error);
  EXPECT_TRUE(tmp.List().empty());
}

TEST(AtomicFile, UncommittedLeavesExistingTargetUntouched) {
  TempDir tmp;
  const std::string path = tmp.Path("out.txt");
  WriteBytes(path, "old");
  {
    AtomicFile f(path);
    f.Write("new contents");
  }
  EXPECT_EQ(ReadBytes(path), "old");
  EXPECT_EQ(tmp.List(), std::vector<std::string>{"out.txt"});
  WriteFileAtomically(path, "replaced");
  EXPECT_EQ(ReadBytes(path), "replaced");
  EXPECT_EQ(tmp.List(), std::vector<std::string>{"out.txt"});
}

TEST(AtomicFile, TempNamesAreDistinct) {
  TempDir tmp;
  const std::string path = tmp.Path("same.txt");
  AtomicFile a(path), b(path);  // both open at once: O_EXCL must not collide
  a.Write("a");
  b.Write("b");
  a.Commit();
  b.Commit();
  EXPECT_EQ(ReadBytes(path), "b");
  EXPECT_EQ(tmp.List(), std::vector<std::string>{"same.txt"});
}

TEST(AtomicFile, UncreatableDirectory) {
  TempDir tmp;
  const std::string path = tmp.Path("no/such/dir/out.bin");
  EXPECT_LETHE_ERROR(AtomicFile f(path), path, "cannot create temporary file");
}

TEST(AtomicFile, ReadFile) {
  TempDir tmp;
  const std::string path = tmp.Path("r.bin");
  WriteBytes(path, std::string("a\0b", 3));
  EXPECT_EQ(ReadFile(path), std::string("a\0b", 3));
  EXPECT_LETHE_ERROR(ReadFile(tmp.Path("none")), tmp.Path("none"), "cannot open");
  EXPECT_LETHE_ERROR(ReadFile(tmp.dir().string()), tmp.dir().string(), "cannot open");
}

TEST(AtomicFile, CheckOutputIsNotAnInput) {
  TempDir tmp;
  const std::string in = tmp.Path("in.npz");
  const std::string other = tmp.Path("other.npz");
  WriteBytes(in, "x");
  WriteBytes(other, "y");
  std::filesystem::create_directories(tmp.dir() / "sub");
  std::filesystem::create_hard_link(in, tmp.dir() / "hard.npz");
  std::filesystem::create_symlink(in, tmp.dir() / "sym.npz");

  CheckOutputIsNotAnInput(tmp.Path("new.npz"), {in, other});  // no throw
  CheckOutputIsNotAnInput(other, {in});
  EXPECT_LETHE_ERROR(CheckOutputIsNotAnInput(in, {other, in}), in,
                     "refusing to overwrite input file " + in);
  const std::string spelled = (tmp.dir() / "sub" / ".." / "in.npz").string();
  EXPECT_LETHE_ERROR(CheckOutputIsNotAnInput(spelled, {in}), spelled, "refusing to overwrite");
  EXPECT_LETHE_ERROR(CheckOutputIsNotAnInput(tmp.Path("hard.npz"), {in}), tmp.Path("hard.npz"),
                     "refusing to overwrite");
  EXPECT_LETHE_ERROR(CheckOutputIsNotAnInput(tmp.Path("sym.npz"), {in}), tmp.Path("sym.npz"),
                     "refusing to overwrite");
  // Neither exists yet: compared by canonical path.
  const std::string a = tmp.Path("later.npz");
  const std::string b = (tmp.dir() / "sub" / ".." / "later.npz").string();
  EXPECT_LETHE_ERROR(CheckOutputIsNotAnInput(a, {b}), a, "refusing to overwrite");
}

}  // namespace
}  // namespace lethe::io
