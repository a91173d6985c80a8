"""``ftmech audit`` on tiny Hugging Face models made here (GPT-2 and LLaMA style), offline.

Each base model learns to repeat the last prompt token; its fine-tuned copy learns to answer the next token
instead, so the repeat capability is lost behaviourally. The audit must run on the pair, read the prompts with
the models' own tokenizer (a JSONL capability), and refuse a pair whose vocabularies differ.
"""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from analyses.cli import main

V = 24  # vocabulary t0 .. t23; t0 pads


def _tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=words[0], pad_token=words[0])


def _train(model, shift: int, steps: int, seed: int) -> None:
    """Teach ``model`` to answer (last prompt token + shift) at the last position."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randint(1, V, (64, 4), generator=gen)
        target = (x[:, -1] - 1 + shift) % (V - 1) + 1
        loss = torch.nn.functional.cross_entropy(model(input_ids=x).logits[:, -1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _pair(root, config, words) -> tuple[str, str]:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tokenizer = _tokenizer(words)
    _train(model, shift=0, steps=80, seed=1)
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    _train(model, shift=1, steps=80, seed=2)
    model.save_pretrained(root / "ft")
    tokenizer.save_pretrained(root / "ft")
    return str(root / "base"), str(root / "ft")


CONFIGS = {
    "gpt2": GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=16),
    "llama": LlamaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=V,
        max_position_embeddings=16,
    ),
}


@pytest.fixture(scope="module")
def capability_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cap") / "repeat.jsonl"
    lines = [
        json.dumps({"prompt": f"t{a} t{b} t{c}", "answer": f"t{c}"})
        for a in range(1, V, 3)
        for b in range(1, V, 5)
        for c in range(1, V)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("family", list(CONFIGS))
def test_audit_runs_on_a_hugging_face_pair(family, tmp_path, capability_file, capsys):
    base, ft = _pair(tmp_path, CONFIGS[family], [f"t{i}" for i in range(V)])
    capsys.readouterr()
    argv = ["audit", "--base", base, "--finetuned", ft, "--capability", f"jsonl:{capability_file}"]
    argv += ["--relearn-steps", "8", "--relearn-lrs", "3e-3", "--prune-ks", "0,1,2,4", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "audit")]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in {"removed", "wrapped", "inconclusive"}
    summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
    evidence = summary["evidence"][0]
    assert evidence["pt_accuracy"] > 0.9 and evidence["ft_accuracy"] < 0.2  # the capability was lost
    assert evidence["reference_kind"].startswith("re-initialised") and evidence["patch_restored"] is not None


def test_audit_refuses_a_pair_with_different_vocabularies(tmp_path, capability_file, capsys):
    base, _ = _pair(tmp_path / "a", CONFIGS["gpt2"], [f"t{i}" for i in range(V)])
    _, other = _pair(tmp_path / "b", CONFIGS["gpt2"], [f"w{i}" for i in range(V)])
    capsys.readouterr()
    argv = ["audit", "--base", base, "--finetuned", other, "--capability", f"jsonl:{capability_file}"]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different vocabularies" in err
