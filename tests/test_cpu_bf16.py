"""bf16 autocast on the CPU: an opt-in precision (the default stays float32, so default scores do not change)."""

from __future__ import annotations

import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.target import Target, cpu_supports_bf16


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def test_cpu_bf16_autocast_is_opt_in_and_secmi_stays_float32(tiny_unet_factory):
    from mia_core.schedule import NoiseSchedule

    unet = tiny_unet_factory(8, 1)
    fp32 = Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))
    assert fp32.precision == "fp32" and not fp32.uses_bf16  # "auto" on a CPU: float32, as before
    bf16 = Target(
        tiny_unet_factory(8, 1), NoiseSchedule.linear(), device=torch.device("cpu"), precision="bf16-autocast"
    )
    assert bf16.uses_bf16 and bf16.fingerprint == fp32.fingerprint  # same model, same store keys
    assert isinstance(cpu_supports_bf16(), bool)
    x = torch.randn(4, 1, 8, 8)
    e32, e16 = fp32.eps(x, 200), bf16.eps(x, 200)
    assert e16.dtype == torch.float32 and not torch.equal(e32, e16)  # bf16 compute, float32 out
    assert torch.allclose(e32, e16, atol=0.1)
    with bf16.full_precision():  # what SecMI (needs_full_precision) runs under
        assert torch.equal(bf16.eps(x, 200), e32)
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    secmi = get_attack("secmi", {"trace": False})
    assert secmi.needs_full_precision
    assert torch.equal(torch.as_tensor(secmi.run(bf16, x0).scores), torch.as_tensor(secmi.run(fp32, x0).scores))
    with pytest.raises(ValueError, match="needs a CUDA device"):  # bf16 *weights* stay GPU only
        Target(tiny_unet_factory(8, 1), NoiseSchedule.linear(), device=torch.device("cpu"), precision="bf16")
