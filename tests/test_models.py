"""lib/models.py on the embedded SmolLM2-135M: special tokens, base + adapters for
generation, 16-bit merges, perplexity and batched generation."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from lib.chat_template import chat_prompt
from lib.models import generate_texts, load_with_adapters, merge_adapters_16bit, perplexity, resolve_model

BASE = "embedded:smollm2-135m-instruct"
CPU = {"dtype": "float32", "load_in_4bit": False, "backend": "hf"}
TEXT = ("The most important thing for a startup is to make something people want. "
        "Everything else is secondary, because without users nothing else matters.")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A real LoRA adapter file whose weights are not zero (random B), with its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(BASE))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model(BASE)).save_pretrained(folder)
    return folder


def logits_of(model, tokenizer, text=TEXT):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def test_embedded_tokenizer_ends_turns_with_im_end(tokenizer):
    # the GGUF conversion in transformers names <|im_start|> as eos; it must be <|im_end|>
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    assert tokenizer.pad_token == "<|im_end|>"


def test_adapter_on_off_and_16bit_merge_give_the_same_models(tmp_path, adapter):
    plain, tokenizer = load_with_adapters(BASE, [], CPU)
    base_logits = logits_of(plain, tokenizer)
    del plain
    model, tokenizer = load_with_adapters(BASE, [adapter], CPU)
    tuned_logits = logits_of(model, tokenizer)
    with model.disable_adapter():
        assert torch.allclose(logits_of(model, tokenizer), base_logits, atol=1e-5)
    assert (tuned_logits - base_logits).abs().max() > 1e-2, "the adapter changed nothing"
    del model

    merged_dir = merge_adapters_16bit(BASE, [adapter], tmp_path / "merged", CPU)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temporary folder left behind
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert merged.dtype == torch.float32 and not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits_of(merged, tokenizer), tuned_logits, atol=1e-4)
    assert (merged_dir / "tokenizer_config.json").is_file() and (merged_dir / "chat_template.jinja").is_file()


def test_adapter_folder_must_hold_an_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: not a LoRA adapter folder"):
        load_with_adapters(BASE, [tmp_path], CPU)


def test_perplexity_of_a_padded_batch_matches_one_text_at_a_time(tokenizer):
    model, tokenizer = load_with_adapters(BASE, [], CPU)
    texts = [TEXT, "Paul Graham writes essays."]
    total_nll = total_tokens = 0.0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            total_nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
        total_tokens += ids.shape[1] - 1
    expected = torch.exp(torch.tensor(total_nll / total_tokens)).item()
    assert perplexity(model, tokenizer, texts, batch_size=2) == pytest.approx(expected, rel=1e-3)  # kernel numerics
    with pytest.raises(ValueError, match="perplexity of no texts"):
        perplexity(model, tokenizer, [])


def test_batched_generation_matches_one_prompt_at_a_time(tokenizer):
    """Left padding: a short prompt batched with a long one is answered as when alone
    (greedy), and the answer holds no special tokens."""
    model, tokenizer = load_with_adapters(BASE, [], CPU)
    prompts = [chat_prompt(tokenizer, "Who are you?"),
               chat_prompt(tokenizer, "Explain in one sentence why startups should launch early and iterate.",
                           "You are Paul Graham.")]
    batched = generate_texts(model, tokenizer, prompts, 12, temperature=0.0, repetition_penalty=1.0)
    alone = [generate_texts(model, tokenizer, [p], 12, temperature=0.0, repetition_penalty=1.0)[0] for p in prompts]
    assert batched == alone and all(batched)
    assert not any("<|im" in answer for answer in batched)


def test_repetition_penalty_leaves_the_prompt_alone():
    """The end-of-turn token that closes every turn of a chat prompt (and pads a batch) must
    not be penalized, or a transformers reply stops later than the same model's in llama.cpp."""
    import torch

    from lib.models import generated_tokens_penalty

    prompt = torch.tensor([[2, 2, 40, 2]])   # left padding and turn ends: <|im_end|> is id 2
    generated = torch.tensor([[2, 2, 40, 2, 17, 17]])
    scores = torch.full((1, 50), 2.0)
    penalized = generated_tokens_penalty(1.5, prompt.shape[1])(generated, scores.clone())
    assert penalized[0, 2] == 2.0 and penalized[0, 40] == 2.0       # prompt tokens untouched
    assert penalized[0, 17] == pytest.approx(2.0 / 1.5)              # a generated token is penalized
    assert len(generated_tokens_penalty(1.0, 4)) == 0
