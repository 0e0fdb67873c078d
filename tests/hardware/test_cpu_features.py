"""CPU facts and feature keys: /proc/cpuinfo parsed from fake texts, a CPU device's budget
keys, and the environment that records the CPU. Nothing here depends on this machine's CPU."""

from __future__ import annotations

from pytest_hwopt.core.devicekeys import CPU_FEATURES, cpu_feature_keys, resolve_budget
from pytest_hwopt.hardware import environment
from pytest_hwopt.hardware.devices import CPU_FLAGS, Device, cpu_facts, cpuinfo_facts

X86_NO_VNNI = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu vme sse sse2 avx fma avx2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu vme sse sse2 avx fma avx2 sha_ni
"""
X86_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm bf16
CPU implementer\t: 0x41
"""


def test_the_recognised_flags_live_in_core():
    assert CPU_FLAGS is CPU_FEATURES


def test_cpuinfo_facts_x86():
    assert cpuinfo_facts(X86_NO_VNNI) == {"cpu": "AMD EPYC 7R13 Processor",
                                          "cpu_flags": ["avx2", "fma"]}
    facts = cpuinfo_facts(X86_VNNI)
    assert facts["cpu"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert facts["cpu_flags"] == ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                  "amx_tile", "amx_bf16", "amx_int8"]


def test_cpuinfo_facts_arm_and_empty():
    assert cpuinfo_facts(ARM) == {"cpu_flags": ["asimddp", "i8mm", "sve"]}
    assert cpuinfo_facts("") == {}


def fake_cpu(text: str) -> Device:
    facts = {"machine": "x86_64", **cpuinfo_facts(text)}
    return Device("cpu", None, str(facts.get("cpu", "cpu")), facts)


def test_budget_keys_of_a_cpu_carry_its_feature_keys():
    keys = fake_cpu(X86_NO_VNNI).budget_keys()
    assert keys == ["AMD EPYC 7R13 Processor", *cpu_feature_keys(["avx2", "fma"]), "cpu"]
    assert "cpu+avx2" in keys and "cpu-avx512_vnni" in keys


def test_budget_keys_without_known_flags_are_name_and_kind():
    assert Device("cpu", None, "Apple M2", {"cpu": "Apple M2"}).budget_keys() == \
        ["Apple M2", "cpu"]
    gpu = Device("cuda", 0, "NVIDIA H100 80GB HBM3", {"cpu_flags": ["avx2"]})
    assert gpu.budget_keys() == ["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]


def test_a_feature_keyed_budget_resolves_on_fake_cpus():
    budget = {"cpu": 1.0, "cpu-avx512_vnni": 1.5, "cpu+avx512_vnni": 3.0}
    assert resolve_budget(budget, fake_cpu(X86_NO_VNNI).budget_keys()) == \
        (1.5, "cpu-avx512_vnni")
    assert resolve_budget(budget, fake_cpu(X86_VNNI).budget_keys()) == (3.0, "cpu+avx512_vnni")
    assert resolve_budget(budget, fake_cpu("").budget_keys()) == (1.0, "cpu")


def test_environment_records_the_cpu_model_and_flags():
    env = environment.collect(None, threads=1)
    assert isinstance(env["cpu"], str) and env["cpu"]
    if "cpu_flags" in cpu_facts():  # this machine has /proc/cpuinfo: its flags, whatever they are
        flags = env["cpu_flags"]
        assert isinstance(flags, list) and set(flags) <= set(CPU_FEATURES)
