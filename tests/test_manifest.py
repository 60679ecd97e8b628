"""The machine a manifest names: the CPU model and the instruction-set extensions that change fp32/bf16 speed."""
from ifsr.manifest import cpu_features

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512vl

processor\t: 1
model name\t: another model
flags\t\t: fpu amx_bf16
"""


def test_cpu_features_name_the_first_processors_model_and_extensions():
    assert cpu_features(CPUINFO) == {"cpu": "AMD EPYC 9B14", "cpu_isa": ["avx2", "avx512f", "avx512_bf16"]}


def test_cpu_features_of_an_avx2_only_host_and_of_an_empty_text():
    avx2 = CPUINFO.replace(" avx512f avx512bw avx512_bf16 avx512vl", "")
    assert cpu_features(avx2)["cpu_isa"] == ["avx2"]
    assert cpu_features("") == {"cpu": None, "cpu_isa": []}
