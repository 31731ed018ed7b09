"""The sampler without a model: frequencies follow the weights, zero weights never win, and
min-p removes exactly the tokens below its share of the top one, row by row."""

from __future__ import annotations

import torch

from onrails.runtime.sampling import SamplingParams, sample


def test_draw_frequencies_follow_the_probabilities_and_never_pick_a_forbidden_token() -> None:
    logits = torch.full((1000,), float("-inf"))
    weights = {3: 0.5, 500: 0.3, 999: 0.15, 0: 0.05}
    for token, p in weights.items():
        logits[token] = float(torch.log(torch.tensor(p)))
    generator = torch.Generator().manual_seed(0)
    draws = 5_000
    counts: dict[int, int] = {}
    for _ in range(draws):
        token = sample(logits, SamplingParams(temperature=1.0), generator)
        counts[token] = counts.get(token, 0) + 1
    assert set(counts) <= set(weights)
    for token, p in weights.items():
        # 5 standard deviations of a binomial count: fails only if the draw is biased.
        sd = (draws * p * (1 - p)) ** 0.5
        assert abs(counts.get(token, 0) - draws * p) < 5 * sd, (token, counts)


def test_draw_with_a_single_possible_token_always_returns_it() -> None:
    logits = torch.full((49152,), float("-inf"))
    logits[49151] = 0.0
    generator = torch.Generator().manual_seed(1)
    assert {sample(logits, SamplingParams(temperature=0.7), generator) for _ in range(200)} == {49151}


def test_same_generator_seed_gives_the_same_draws() -> None:
    logits = torch.randn(5000, generator=torch.Generator().manual_seed(2))
    first = [sample(logits, SamplingParams(temperature=1.0), torch.Generator().manual_seed(9)) for _ in range(3)]
    again = [sample(logits, SamplingParams(temperature=1.0), torch.Generator().manual_seed(9)) for _ in range(3)]
    assert first == again
    many = {sample(logits, SamplingParams(temperature=1.0), torch.Generator().manual_seed(s)) for s in range(50)}
    assert len(many) > 10


def test_min_p_leaves_only_tokens_at_least_min_p_times_the_top_one_and_only_in_its_own_row() -> None:
    # Token 2 (0.16) clears 0.5 * 0.3 and token 3 (0.14) does not.
    weights = torch.tensor([0.3, 0.25, 0.16, 0.14, 0.1, 0.05])
    logits = torch.full((2, 1000), float("-inf"))
    logits[:, : len(weights)] = weights.log()
    params = [SamplingParams(temperature=1.0, min_p=0.5), SamplingParams(temperature=1.0, min_p=0.0)]
    generator = torch.Generator().manual_seed(3)
    picked: list[set[int]] = [set(), set()]
    for _ in range(2_000):
        for row, p in enumerate(params):
            picked[row].add(sample(logits[row], p, generator))
    assert picked[0] == {0, 1, 2}
    assert picked[1] == set(range(len(weights)))


def test_min_p_is_judged_on_the_tempered_distribution() -> None:
    # The second token has e**-1 = 0.37 of the top's probability at temperature 1, and e**-0.5
    # = 0.61 at temperature 2: min_p 0.5 removes it only at temperature 1.
    logits = torch.full((100,), float("-inf"))
    logits[7], logits[8] = 0.0, -1.0
    generator = torch.Generator().manual_seed(4)
    cold = {sample(logits, SamplingParams(temperature=1.0, min_p=0.5), generator) for _ in range(300)}
    hot = {sample(logits, SamplingParams(temperature=2.0, min_p=0.5), generator) for _ in range(300)}
    assert cold == {7} and hot == {7, 8}
