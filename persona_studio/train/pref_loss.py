"""DPO and ORPO objectives on summed completion log-probs (the formulas of TRL's trainers).

    DPO (Rafailov et al. 2023), with h = (log pi(c) - log ref(c)) - (log pi(r) - log ref(r)):
        sigmoid  -log sigmoid(beta * h)          hinge  max(0, 1 - beta * h)
        ipo      (h' - 1 / (2 beta))^2, h' the same difference of per-token averages
    ORPO (Hong et al. 2024), with a = average per-token log-prob of a completion:
        NLL(chosen completion) - beta * log sigmoid(log odds(a_c) - log odds(a_r)),  odds(a) = e^a / (1 - e^a)

Rewards as TRL logs them: DPO beta * (log pi - log ref), ORPO beta * a. tests/test_train_pref.py holds
the DPO loss equal to TRL's DPOTrainer on the same batch, and the ORPO odds-ratio term equal to
TRL's ORPOTrainer. Our ORPO NLL is taken on the completion tokens (the paper's and LLaMA-Factory's
choice: a persona learns its replies, not the prompts), where TRL's also counts the prompt.
"""

from __future__ import annotations

from typing import Any


def completion_logps(net: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(summed log-prob of each row's completion tokens, their count) — rows as in collate_pairs.

    Only the positions that predict a completion token go through the LM head (`logits_to_keep`
    with indices): the prompt, usually most of a chat pair, never builds vocabulary-sized logits."""
    import torch

    target = batch["completion_mask"][:, 1:].bool()
    keep = batch.get("keep")
    if keep is None:
        keep = target.any(0).nonzero().squeeze(-1)
    out = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep,
              use_cache=False)
    logits = out.logits.float()
    labels = batch["input_ids"][:, 1:][:, keep]
    mask = target[:, keep]
    token_logps = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def dpo_loss(pol_c: Any, pol_r: Any, ref_c: Any, ref_r: Any, beta: float, loss_type: str = "sigmoid",
             n_c: Any = None, n_r: Any = None) -> tuple[Any, Any, Any]:
    """(per-pair loss, chosen rewards, rejected rewards)."""
    import torch
    import torch.nn.functional as F

    c_ratio, r_ratio = pol_c - ref_c, pol_r - ref_r
    h = c_ratio - r_ratio
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    elif loss_type == "ipo":
        avg = c_ratio / n_c.clamp(min=1) - r_ratio / n_r.clamp(min=1)
        losses = (avg - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss type {loss_type!r}")
    return losses, beta * c_ratio.detach(), beta * r_ratio.detach()


def log1mexp(x: Any) -> Any:
    """log(1 - e^x) for x < 0, without cancellation on either side of -ln 2."""
    import torch

    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_odds_term(avg_c: Any, avg_r: Any) -> Any:
    """log sigmoid of the log odds ratio, per pair (ORPO's preference term, before beta)."""
    import torch.nn.functional as F

    avg_c, avg_r = avg_c.float(), avg_r.float()
    log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r))
    return F.logsigmoid(log_odds)


def orpo_loss(pol_c: Any, pol_r: Any, n_c: Any, n_r: Any, beta: float) -> tuple[Any, Any, Any, Any]:
    """(per-pair preference loss, chosen rewards, rejected rewards, summed chosen NLL).

    The caller adds NLL / (chosen tokens of the step) so accumulation keeps the objective."""
    avg_c, avg_r = pol_c / n_c.clamp(min=1), pol_r / n_r.clamp(min=1)
    ratio = orpo_odds_term(avg_c, avg_r)
    return -beta * ratio, beta * avg_c.detach(), beta * avg_r.detach(), -pol_c.sum()
