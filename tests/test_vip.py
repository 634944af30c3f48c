"""The VIP's blockwise attention equals plain attention, at sizes across the chunk boundary."""

import pytest
import torch
import torch.nn.functional as F

from glimpse_demo import vip


@pytest.mark.parametrize("n", [1, 17, 300])
def test_chunked_attention_equals_sdpa(n, monkeypatch):
    monkeypatch.setattr(vip, "SCORE_ELEMENTS", 64)  # force many small query blocks
    g = torch.Generator().manual_seed(n)
    q, k = torch.randn(4, n, 12, generator=g), torch.randn(4, n, 12, generator=g)
    v = torch.randn(4, n, 4, generator=g)  # value heads narrower than query/key heads, as in the VIP
    torch.testing.assert_close(vip._attend(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)
