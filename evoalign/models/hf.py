"""The transformers backend: batched, left-padded, length-bucketed chat generation and scoring.

Prompts are sorted by token length and cut into batches (`batch_size` sequences each, `n` samples per
conversation sharing one prefill of its prompt), so padding stays small. Sampling is batch-invariant and the
log-probs come from the generation itself (see `evoalign.models.sampling`). Loads a local directory,
a hub id, a GGUF file, and optionally a PEFT adapter on top; dtype and device are chosen automatically.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from evoalign.errors import ModelError
from evoalign.models.base import TOKENIZE, TRANSFORMERS, ChatModel, Sample, SamplingParams, Score
from evoalign.models.cache import weights_fingerprint
from evoalign.models.refusal_tokens import RefusalKnob, prepare_base_for_adapter
from evoalign.models.sampling import RecordingSampler, row_seed
from evoalign.paths import is_local_path
from evoalign.progress import progress_bar
from evoalign.prompts import Conversation

logger = logging.getLogger(__name__)


def auto_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """CUDA with bf16 (fp16 where bf16 is unsupported) when a GPU is present, else CPU fp32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    return torch.device(device), getattr(torch, dtype)


def _split_gguf(path: str, gguf_file: str | None) -> tuple[str, str | None]:
    if gguf_file is None and path.endswith(".gguf"):
        file = Path(path).expanduser()
        return str(file.parent), file.name
    return path, gguf_file


def _common_prefix_length(rows: list[list[int]]) -> int:
    first = rows[0]
    length = min(len(row) for row in rows)
    for row in rows[1:]:
        length = next((i for i in range(length) if row[i] != first[i]), length)
    return length


def _accepts_logits_to_keep(model: Any) -> bool:
    """Whether the (PEFT-unwrapped) model's forward takes transformers' `logits_to_keep` (every built-in LM does)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def load_tokenizer(path: str, *, gguf_file: str | None = None, trust_remote_code: bool = False, revision=None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, gguf_file=gguf_file, trust_remote_code=trust_remote_code, revision=revision
    )
    if tokenizer.chat_template is None:
        raise ModelError(f"{path}: the tokenizer has no chat template; evoalign needs a chat (instruct) model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class HFChatModel(ChatModel):
    """A transformers causal LM used as a ChatModel (see the module docstring)."""

    capabilities = frozenset({TOKENIZE, TRANSFORMERS})

    def __init__(
        self,
        path: str,
        *,
        spec: str | None = None,
        adapter: str | None = None,
        gguf_file: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        min_shared_prefix: int = 8,
        trust_remote_code: bool = False,
        revision: str | None = None,
        soft_prompt: str | None = None,
        refusal_bias: float | dict[str, float] | None = None,
        refusal_threshold: float | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.path, self.gguf_file = _split_gguf(str(path), gguf_file)
        self.spec = spec or f"hf:{path}"
        self.adapter = adapter
        self.batch_size = batch_size
        self.min_shared_prefix = min_shared_prefix
        self.revision = revision
        if model is not None:
            self.model, self.tokenizer = model, tokenizer
            self.device = next(model.parameters()).device
        else:
            self._load(device, dtype, trust_remote_code)
        self.tokenizer.padding_side = "left"
        self.model.eval()
        self._identity = self._make_identity()
        self.soft_prompt = None  # a learnt system prompt (evoalign.models.soft_prompt), inserted by embedding hooks
        if soft_prompt:
            from evoalign.models.soft_prompt import SoftPrompt

            self.soft_prompt = SoftPrompt.load(soft_prompt).attach(self.model)
            self._identity += f"|soft_prompt={self.soft_prompt.fingerprint}"
        # the refusal-token knob (evoalign.models.refusal_tokens); control tokens are stripped from texts either way
        self.refusal = RefusalKnob.resolve(self.spec, self.tokenizer, refusal_bias, refusal_threshold)
        if self.refusal is not None:
            self._identity += f"|{self.refusal.describe()}"
        self._keeps_logits = _accepts_logits_to_keep(self.model)

    def _logits_kept(self, count: int) -> dict[str, int]:
        """Forward kwargs that project only the last `count` positions onto the vocabulary, where supported.

        The full logits are batch x length x vocabulary float32 (7.5 GB for 128 rows of 300 tokens of a
        49k-token vocabulary); a prefill needs none of them and scoring needs only the response's positions.
        """
        return {"logits_to_keep": count} if self._keeps_logits else {}

    def _load(self, device: str, dtype: str, trust_remote_code: bool) -> None:
        from transformers import AutoModelForCausalLM

        if is_local_path(self.path) and not Path(self.path).expanduser().exists():
            raise ModelError(f"model path not found: {self.path}")
        self.device, torch_dtype = auto_device_dtype(device, dtype)
        try:
            self.tokenizer = load_tokenizer(
                self.path, gguf_file=self.gguf_file, trust_remote_code=trust_remote_code, revision=self.revision
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path,
                gguf_file=self.gguf_file,
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
                revision=self.revision,
                use_safetensors=None if self.gguf_file else True,
            ).to(self.device)
        except OSError as err:
            raise ModelError(f"cannot load model '{self.path}': {str(err).splitlines()[0]}") from None
        if self.adapter:
            self._load_adapter()

    def _load_adapter(self) -> None:
        from peft import PeftModel

        if not Path(self.adapter).expanduser().exists():
            raise ModelError(f"adapter path not found: {self.adapter}")
        adapter_tokenizer = Path(self.adapter).expanduser() / "tokenizer_config.json"
        if adapter_tokenizer.is_file():  # an adapter trained with added (refusal) tokens brings them and their rows
            tokenizer = load_tokenizer(str(adapter_tokenizer.parent))
            if len(tokenizer) > len(self.tokenizer):
                prepare_base_for_adapter(self.model, tokenizer, self.adapter)
                self.tokenizer = tokenizer
        self.model = PeftModel.from_pretrained(self.model, self.adapter).to(self.device)

    @property
    def identity(self) -> str:
        """The model's path (or hub id), GGUF file, revision and adapter, with content fingerprints of the local
        model and adapter taken when they were loaded, and a hub model's commit: new weights in the same folder
        never meet the old weights' cached answers."""
        return self._identity

    def _make_identity(self) -> str:
        local = Path(self.path).expanduser()
        parts = [f"hf:{local.resolve() if local.exists() else self.path}"]
        model_file = local / self.gguf_file if self.gguf_file else local
        commit = getattr(getattr(self.model, "config", None), "_commit_hash", None) if not local.exists() else None
        adapter = self.adapter and Path(self.adapter).expanduser()
        for extra in (
            self.gguf_file,
            self.revision,
            commit and f"commit={commit}",
            (fingerprint := weights_fingerprint(model_file)) and f"weights={fingerprint}",
            adapter and str(adapter.resolve()),
            adapter and (fingerprint := weights_fingerprint(adapter)) and f"adapter={fingerprint}",
        ):
            if extra:
                parts.append(str(extra))
        return "|".join(parts)

    @property
    def hf_model(self) -> Any:
        return self.model

    @property
    def hf_tokenizer(self) -> Any:
        return self.tokenizer

    @property
    def max_context(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def end_of_turn_ids(self) -> list[int]:
        """Token ids that end the assistant turn: EOS plus the template's end-of-turn token if distinct."""
        ids = {self.tokenizer.eos_token_id}
        for token in ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        configured = self.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        return sorted(i for i in ids if i is not None)

    def prompt_ids(self, conversations: list[Conversation]) -> list[list[int]]:
        """Token ids of each conversation rendered with the chat template and the generation prompt."""
        if self.soft_prompt is not None:  # its placeholder ids sit where the system message's text goes
            return self.soft_prompt.prompt_ids(self.tokenizer, conversations)
        texts = [
            self.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            for conv in conversations
        ]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _batches(self, lengths: list[int], per_batch: int) -> list[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        return [order[start : start + per_batch] for start in range(0, len(order), per_batch)]

    def _pad_left(self, rows: list[list[int]]):
        import torch

        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return input_ids, mask

    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        params = params or SamplingParams()
        if not conversations:
            return []
        prompts = self.prompt_ids(conversations)
        from evoalign.models import check_context

        check_context(self, conversations, params.max_new_tokens, prompt_ids=prompts)
        distinct = 1 if params.greedy else params.n  # greedy samples are identical: decode once, repeat
        results: list[list[Sample]] = [[] for _ in conversations]
        batches = self._batches([len(p) for p in prompts], max(1, self.batch_size // distinct))
        with progress_bar(total=len(conversations), desc=desc) as bar:
            for batch in batches:
                samples = self._generate_batch([prompts[i] for i in batch], [conversations[i] for i in batch], params)
                for position, index in enumerate(batch):
                    chunk = samples[position * distinct : (position + 1) * distinct]
                    results[index] = chunk * params.n if distinct == 1 else chunk
                bar.update(len(batch))
        return results

    def _generate_batch(self, prompts: list[list[int]], convs: list[Conversation], params: SamplingParams):
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        distinct = 1 if params.greedy else params.n
        seeds = [row_seed(params.seed, conv, k) for conv in convs for k in range(distinct)]
        sampler = RecordingSampler(params, seeds, self.device)
        inputs = self._prefilled_inputs(prompts, distinct)
        eot = self.end_of_turn_ids
        start = inputs["input_ids"].shape[1]
        processors = [self.refusal.processor(start)] if self.refusal is not None else []
        # The sampler returns one-hot scores, so transformers' greedy step picks exactly the token it chose;
        # rows are already expanded per sample, so transformers' own (slow, batch-global) sampling never runs.
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eot,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
        )
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList([*processors, sampler]),
                tokenizer=self.tokenizer if params.stop else None,
            )
        generated = output[:, inputs["input_ids"].shape[1] :].tolist()
        logprobs = sampler.logprob_matrix().tolist()
        return [self._make_sample(tokens, lps, eot, params) for tokens, lps in zip(generated, logprobs)]

    def _prefilled_inputs(self, prompts: list[list[int]], distinct: int) -> dict[str, Any]:
        """Generation inputs, one row per (prompt, sample), with as much of the prompts prefilled once as possible.

        A long prefix shared by every prompt (system prompt, few-shot examples) is prefilled once; each prompt
        is prefilled once however many samples it gets; the KV cache is then repeated per row. Rows are laid
        out as [shared prefix][padding][own suffix]; positions come from the attention mask, so the padding in
        the middle shifts nothing. With neither saving available this is plain left padding.
        """
        import torch

        shared = min(_common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
        if len(prompts) * distinct < 2 or shared < self.min_shared_prefix:
            shared = 0
        if shared == 0 and distinct == 1:
            input_ids, mask = self._pad_left(prompts)
            return {"input_ids": input_ids, "attention_mask": mask}
        suffix_ids, suffix_mask = self._pad_left([p[shared:] for p in prompts])
        prefix = torch.tensor([prompts[0][:shared]], device=self.device, dtype=suffix_ids.dtype)
        input_ids = torch.cat([prefix.expand(len(prompts), shared), suffix_ids], dim=1)
        mask = torch.cat([torch.ones_like(input_ids[:, :shared]), suffix_mask], dim=1)
        cache = None
        with torch.inference_mode():
            if shared:
                cache = self.model(input_ids=prefix, use_cache=True, **self._logits_kept(1)).past_key_values
                cache.batch_repeat_interleave(len(prompts))
            if input_ids.shape[1] - 1 > shared:  # everything but each row's last token, which generate() feeds
                positions = (mask.cumsum(-1) - 1).clamp_min(0)[:, shared:-1]
                cache = self.model(
                    input_ids=input_ids[:, shared:-1],
                    attention_mask=mask[:, :-1],
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    **self._logits_kept(1),  # generate() computes the first token's logits itself
                ).past_key_values
        inputs = {
            "input_ids": input_ids.repeat_interleave(distinct, dim=0),
            "attention_mask": mask.repeat_interleave(distinct, dim=0),
        }
        if cache is not None:  # None only for one-token prompts: nothing to prefill
            cache.batch_repeat_interleave(distinct)
            inputs["past_key_values"] = cache
        return inputs

    def _make_sample(self, tokens: list[int], logprobs: list[float], eot: list[int], params: SamplingParams):
        length = next((i for i, t in enumerate(tokens) if t in eot), None)
        finish = "stop" if length is not None else "length"
        if length is None:
            length = len(tokens)
        text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
        for stop in params.stop:
            if stop in text:
                text, finish = text[: text.index(stop)], "stop"
        lps = logprobs[:length] if params.logprobs else None
        return Sample(
            text=text,
            logprob_sum=float(sum(lps)) if lps is not None else None,
            num_tokens=length if lps is not None else None,
            finish_reason=finish,
            tokens=self.tokenizer.convert_ids_to_tokens(tokens[:length]) if params.logprobs else None,
            token_logprobs=[float(x) for x in lps] if lps is not None else None,
        )

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        import torch

        if len(conversations) != len(responses):
            raise ValueError("score() needs one response per conversation")
        prompts = self.prompt_ids(conversations)
        answers = self.tokenizer(list(responses), add_special_tokens=False)["input_ids"]
        rows = [p + a for p, a in zip(prompts, answers)]
        scores: list[Score | None] = [None] * len(rows)
        for batch in self._batches([len(r) for r in rows], self.batch_size):
            input_ids, mask = self._pad_left([rows[i] for i in batch])
            counts = [len(answers[i]) for i in batch]
            kept = max(counts) + 1  # the answers end every row (left padding): their positions are the last ones
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=mask, **self._logits_kept(kept)).logits
            for position, (index, count) in enumerate(zip(batch, counts)):
                total = 0.0
                if count:  # one row at a time: no batch x length x vocabulary float32 copy
                    row = torch.log_softmax(logits[position, -count - 1 : -1].float(), dim=-1)
                    targets = input_ids[position, -count:]
                    total = row.gather(-1, targets[:, None]).sum().item()
                scores[index] = Score(logprob_sum=total, num_tokens=count)
        return scores  # type: ignore[return-value]
