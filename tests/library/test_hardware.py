"""Native bf16 is read from the CPU's feature flags, so slow emulated bf16 is never chosen by default."""

from library.hardware import cpu_has_native_bf16, parse_cpu_flags

AMX_HOST = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n"
ZEN2_HOST = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
ARM_HOST = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_flags_come_from_the_first_flags_line():
    assert parse_cpu_flags(AMX_HOST) >= {"avx512_bf16", "amx_bf16"}
    assert parse_cpu_flags("no flags here") == frozenset()


def test_native_bf16_needs_avx512_bf16_or_amx_on_x86_and_the_bf16_feature_on_arm():
    assert cpu_has_native_bf16(parse_cpu_flags(AMX_HOST), "x86_64")
    assert not cpu_has_native_bf16(parse_cpu_flags(ZEN2_HOST), "x86_64")
    assert cpu_has_native_bf16(parse_cpu_flags(ARM_HOST), "aarch64")
    assert not cpu_has_native_bf16(frozenset({"bf16"}), "x86_64")
