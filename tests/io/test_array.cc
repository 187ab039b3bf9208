// Array conversions: exact half/bfloat16 decoding, round-to-nearest-even encoding.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "io/array.h"
#include "test_util.h"

namespace lethe::io {
namespace {

Array FromBits(DType dtype, const std::vector<uint16_t>& bits) {
  Array a;
  a.dtype = dtype;
  a.shape = {static_cast<int64_t>(bits.size())};
  a.bytes.resize(bits.size() * 2);
  std::memcpy(a.bytes.data(), bits.data(), a.bytes.size());
  return a;
}

std::vector<uint16_t> Bits(const Array& a) {
  std::vector<uint16_t> bits(a.bytes.size() / 2);
  std::memcpy(bits.data(), a.bytes.data(), a.bytes.size());
  return bits;
}

uint16_t RoundTo(DType dtype, double value) {
  return Bits(Array::FromDouble({value}, {1}, dtype))[0];
}

TEST(Array, HalfDecodesKnownValues) {
  const std::vector<double> got =
      FromBits(DType::kF16, {0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00,
                             0xfc00, 0x7e00})
          .ToDouble("t");
  EXPECT_EQ(got[0], 0.0);
  EXPECT_TRUE(std::signbit(got[1]));
  EXPECT_EQ(got[2], 1.0);
  EXPECT_EQ(got[3], -2.5);
  EXPECT_EQ(got[4], 65504.0);
  EXPECT_EQ(got[5], std::ldexp(1.0, -24));  // smallest subnormal
  EXPECT_EQ(got[6], 1023 * std::ldexp(1.0, -24));
  EXPECT_EQ(got[7], std::ldexp(1.0, -14));  // smallest normal
  EXPECT_EQ(got[8], std::numeric_limits<double>::infinity());
  EXPECT_EQ(got[9], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(got[10]));
}

// Every one of the 65536 bit patterns decodes exactly and re-encodes to itself.
void ExpectAllPatternsRoundTrip(DType dtype) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  const std::vector<double> values = FromBits(dtype, all).ToDouble("t");
  const std::vector<uint16_t> back = Bits(Array::FromDouble(values, {65536}, dtype));
  const int exp_shift = dtype == DType::kF16 ? 10 : 7;
  const uint32_t exp_mask = dtype == DType::kF16 ? 0x1f : 0xff;
  for (uint32_t i = 0; i < 65536; ++i) {
    const bool nan = ((i >> exp_shift) & exp_mask) == exp_mask && (i & ((1u << exp_shift) - 1));
    if (nan) {
      EXPECT_TRUE(std::isnan(values[i])) << i;
      EXPECT_EQ((back[i] >> exp_shift) & exp_mask, exp_mask) << i;
      EXPECT_NE(back[i] & ((1u << exp_shift) - 1), 0u) << i;
    } else {
      ASSERT_EQ(back[i], i) << "pattern " << i << " value " << values[i];
    }
  }
}

TEST(Array, HalfAllPatternsRoundTrip) { ExpectAllPatternsRoundTrip(DType::kF16); }
TEST(Array, BFloat16AllPatternsRoundTrip) { ExpectAllPatternsRoundTrip(DType::kBF16); }

TEST(Array, BFloat16IsTopHalfOfFloat) {
  const std::vector<uint16_t> bits = {0x3f80, 0xc040, 0x0001, 0x7f7f};
  const std::vector<double> got = FromBits(DType::kBF16, bits).ToDouble("t");
  for (size_t i = 0; i < bits.size(); ++i)
    EXPECT_EQ(got[i], std::bit_cast<float>(static_cast<uint32_t>(bits[i]) << 16));
}

TEST(Array, HalfRoundsToNearestEven) {
  const double ulp = std::ldexp(1.0, -10);                     // spacing of halves in [1, 2)
  EXPECT_EQ(RoundTo(DType::kF16, 1.0 + ulp / 2), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(RoundTo(DType::kF16, 1.0 + 3 * ulp / 2), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(RoundTo(DType::kF16, 1.0 + ulp / 2 + std::ldexp(1.0, -40)),
            0x3c01);  // no double rounding
  EXPECT_EQ(RoundTo(DType::kF16, 1.0 + ulp / 2 - std::ldexp(1.0, -40)), 0x3c00);
  EXPECT_EQ(RoundTo(DType::kF16, -1.0 - ulp / 2), 0xbc00);
  EXPECT_EQ(RoundTo(DType::kF16, 65519.0), 0x7bff);  // below the tie with 65536
  EXPECT_EQ(RoundTo(DType::kF16, 65520.0), 0x7c00);  // tie rounds to even: overflow to inf
  EXPECT_EQ(RoundTo(DType::kF16, 1e300), 0x7c00);
  EXPECT_EQ(RoundTo(DType::kF16, std::ldexp(1.0, -25)), 0x0000);      // tie -> 0
  EXPECT_EQ(RoundTo(DType::kF16, 3 * std::ldexp(1.0, -25)), 0x0002);  // tie -> even
  EXPECT_EQ(RoundTo(DType::kF16, std::ldexp(1.0, -25) * 1.0001), 0x0001);
  EXPECT_EQ(RoundTo(DType::kF16, 1e-300), 0x0000);
  EXPECT_EQ(RoundTo(DType::kF16, -1e-300), 0x8000);
  EXPECT_EQ(RoundTo(DType::kF16, std::ldexp(1023.5, -24)),
            0x0400);  // subnormal rounds up to normal
  EXPECT_EQ(RoundTo(DType::kF16, std::numeric_limits<double>::denorm_min()), 0x0000);
}

TEST(Array, BFloat16RoundsToNearestEven) {
  const double ulp = std::ldexp(1.0, -7);
  EXPECT_EQ(RoundTo(DType::kBF16, 1.0 + ulp / 2), 0x3f80);
  EXPECT_EQ(RoundTo(DType::kBF16, 1.0 + 3 * ulp / 2), 0x3f82);
  EXPECT_EQ(RoundTo(DType::kBF16, 1.0 + ulp / 2 + std::ldexp(1.0, -40)), 0x3f81);
  EXPECT_EQ(RoundTo(DType::kBF16, 3.4e38), 0x7f80);  // past the tie above the max bf16
  EXPECT_EQ(RoundTo(DType::kBF16, -std::numeric_limits<double>::infinity()), 0xff80);
  EXPECT_EQ(RoundTo(DType::kBF16, std::ldexp(1.0, -133)), 0x0001);  // smallest subnormal
}

TEST(Array, FloatAndDoubleFromDouble) {
  const Array f = Array::FromDouble({0.1, -2.0}, {2}, DType::kF32);
  EXPECT_EQ(f.ToDouble("t")[0], static_cast<double>(0.1f));
  const Array d = Array::FromDouble({0.1, -2.0}, {1, 2}, DType::kF64);
  EXPECT_EQ(d.ToDouble("t"), (std::vector<double>{0.1, -2.0}));
  EXPECT_EQ(d.NumElements(), 2);
}

TEST(Array, ToInt64) {
  EXPECT_EQ(Array::FromInt64({-5, 7}, {2}).ToInt64("t"), (std::vector<int64_t>{-5, 7}));
  EXPECT_EQ(Array::FromDouble({3.0, -1.0}, {2}, DType::kF32).ToInt64("t"),
            (std::vector<int64_t>{3, -1}));
  EXPECT_LETHE_ERROR(Array::FromDouble({1.5}, {1}, DType::kF64).ToInt64("w.npz: y"), "w.npz",
                     "not an int64 integer");
  Array big;
  big.dtype = DType::kU64;
  big.shape = {1};
  big.bytes.assign(8, 0xff);
  EXPECT_LETHE_ERROR(big.ToInt64("w.npz: ids"), "w.npz", "does not fit in int64");
}

TEST(Array, DTypeNamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kU64), 8);
  EXPECT_TRUE(IsFloating(DType::kF16));
  EXPECT_TRUE(IsInteger(DType::kBool));
  EXPECT_EQ(Array{}.NumElements(), 1);  // a scalar
}

}  // namespace
}  // namespace lethe::io
