"""A small cross-encoder for stance: the embedding model's transformer fine-tuned on (headline, best-matching
sentences) pairs, read together so attention can see whether the sentences assert, hedge or refute the claim.

A text model like the embedder (not a scikit-learn estimator): ``fit`` / ``predict_proba`` take texts, the
weights are saved as safetensors with a JSON of settings. CPU-friendly: ~13 minutes an epoch for FNC-1's
13,000 related pairs on 2 cores in fp32; ~35 s an epoch for 3,000 short (headline, story) pairs in bf16 autocast
(``precision="bf16"``, on a CPU with AMX).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from .embed import resolve_model_path


def check_device(device: str) -> None:
    """Raise a one-line ConfigError unless torch can use ``device`` here (before any training starts)."""
    import torch

    kind = device.split(":")[0]
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available(),
                 "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available()}.get(kind, lambda: False)()
    if available and kind in ("cuda", "xpu") and ":" in device:
        available = int(device.split(":")[1]) < getattr(torch, kind).device_count()
    if not available:
        from .errors import ConfigError

        raise ConfigError(f"stance.cross_encoder.device: {device!r} is not available on this machine (torch "
                          f"{torch.__version__}); use cpu, or a device this machine has")


def check_frozen_layers(frozen_layers: int, layers: int) -> None:
    """Raise a one-line ConfigError unless ``frozen_layers`` names 0 .. ``layers`` + 1 stages (the embeddings and
    an encoder of ``layers`` transformer layers)."""
    if not 0 <= frozen_layers <= layers + 1:
        from .errors import ConfigError

        raise ConfigError(f"stance.cross_encoder.frozen_layers: {frozen_layers} is outside 0..{layers + 1} "
                          f"(the embeddings and {layers} transformer layers)")


def encoder_layers(model: str) -> int:
    """The transformer layer count of the packaged ``model``, from its config file (no weights loaded)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True).num_hidden_layers


def cpu_flags_have_bf16_matmul(flags: str) -> bool:
    """Whether a CPU with these ``/proc/cpuinfo`` flags multiplies bfloat16 matrices in hardware: AMX tiles
    (``amx_bf16``). AVX-512 BF16 alone (``avx512_bf16``) is not enough: on such a CPU (Xeon model 207 in a VM
    without AMX) a cross-encoder training step measured 0.73 s in bf16 autocast against 0.52 s in fp32 (batch 32,
    40 word pieces), where the same step on a CPU with AMX took 0.29 s against 0.49 s."""
    return bool(re.search(r"\bamx_bf16\b", flags))


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device: str) -> bool:
    """Whether ``device`` computes bfloat16 faster than fp32: a CPU with AMX (read from /proc/cpuinfo on Linux;
    elsewhere torch's own AMX check), or a GPU that supports bf16. Without it, bf16 autocast is slower than fp32."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return kind == "xpu"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: torch's check, where this torch build has it
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check()) if check is not None else False
    return cpu_flags_have_bf16_matmul(flags)


_FITS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cross_encoder_fits", default=None)
FITS_RUN = 0
"""How many cross-encoder trainings this process ran (tests check that ``reuse_fits`` skips repeats)."""


@contextlib.contextmanager
def reuse_fits():
    """Inside this block a cross-encoder fitted on exactly the inputs and settings of an earlier fit of the block
    is that fit again (trained once: the training is deterministic for given inputs, settings and seed).
    ``classify tune`` uses it: settings of the grid that leave the cross-encoder's training pairs and settings
    alone (a classifier's C, the mixing weight, calibration) share one cross-encoder per fold."""
    token = _FITS.set({})
    try:
        yield
    finally:
        _FITS.reset(token)


_SCORE_STORE: contextvars.ContextVar = contextvars.ContextVar("cross_encoder_scores", default=None)
SCORED = 0
"""How many pairs this process scored with an ONNX cross-encoder (tests check that stored scores are reused)."""


@contextlib.contextmanager
def stored_scores(store):
    """Inside this block a cross-encoder scored by an ONNX runtime keeps each pair's probabilities in ``store``
    (the embedding cache's :class:`~classify.store.VectorStore`, or None for none) and reads them back: a second
    ``predict`` / ``report`` / ``plot`` over the same pages scores no pair again. An ONNX runtime scores a pair
    alone (canonical batches), so a stored score is the score, bit for bit; ``runtime: torch`` pads batches and is
    never stored. Keyed by a hash of the export, its classes and max_length, and the pair's two texts."""
    token = _SCORE_STORE.set(store)
    try:
        yield
    finally:
        _SCORE_STORE.reset(token)


def _fit_key(ce: "CrossEncoder", headlines, contexts, labels, same_event, pretrain=None) -> str:
    params = {k: v for k, v in vars(ce).items() if not k.endswith("_") and not k.startswith("_")
              and k != "show_progress"}
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    _hash_pairs(h.update, (headlines, contexts, labels))
    if same_event is not None:
        h.update(json.dumps([list(same_event[0]), list(same_event[1]), [int(x) for x in same_event[2]]]).encode())
    if pretrain is not None:
        _hash_pairs(h.update, pretrain, b"pretrain\0")
    return h.hexdigest()


def _hash_pairs(update, pairs, prefix: bytes = b"") -> None:
    """Feed (first texts, second texts, labels) to a hash's ``update``."""
    update(prefix)
    for part in (pairs[0], pairs[1], [str(x) for x in pairs[2]]):
        update(json.dumps(list(part)).encode() + b"\0")


def _pretrain_key(ce: "CrossEncoder", pretrain, classes) -> str:
    """What a pretraining run depends on: the settings that shape it, its pairs and the stance classes."""
    params = [ce.model, ce.pretrain_epochs, ce.pretrain_order, ce.learning_rate, ce.batch_size, ce.max_length, ce.seed,
              ce.length_batches, ce.device, ce.precision, ce.frozen_layers, ce.linear_probe, ce.layer_decay,
              [str(c) for c in classes]]
    h = hashlib.sha256(json.dumps(params, default=str).encode())
    _hash_pairs(h.update, pretrain)
    return h.hexdigest()


class CrossEncoder:
    def __init__(self, model: str = "all-MiniLM-L6-v2", epochs: float = 1.0, learning_rate: float = 4e-5,
                 batch_size: int = 32, max_length: int = 128, seed: int = 0, show_progress: bool = True,
                 length_batches: bool = True, device: str = "cpu", runtime: str = "torch", precision: str = "fp32",
                 frozen_layers: int = 0, pretrain_epochs: float = 1.0, pretrain_order: str = "before",
                 linear_probe: bool = False, layer_decay: float = 1.0, average_last: float = 0.0):
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.show_progress = show_progress
        self.length_batches = length_batches
        self.device = device
        self.runtime = runtime
        self.precision = precision
        self.frozen_layers = frozen_layers
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_order = pretrain_order
        self.linear_probe = linear_probe
        self.layer_decay = layer_decay
        self.average_last = average_last

    def _build(self, n_classes: int):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = resolve_model_path(self.model)
        torch.manual_seed(self.seed)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.encoder_ = AutoModel.from_pretrained(path, local_files_only=True)
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, n_classes)
        self.encoder_.to(self.device)
        self.head_.to(self.device)

    def _tokenize(self, headlines, contexts) -> dict:
        """Word pieces of each (headline, context) pair within ``max_length``: the context is cut to fit; a
        headline of more than half of ``max_length`` pieces, which would leave the context no room, is cut too
        (the longer of the two first)."""
        headlines, contexts = list(headlines), list(contexts)
        if not headlines:
            return {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        sizes = self.tokenizer_(headlines, add_special_tokens=False)["input_ids"]
        long = [len(ids) > self.max_length // 2 for ids in sizes]
        out: dict[str, list] = {}
        for flag, truncation in ((False, "only_second"), (True, "longest_first")):
            idx = [i for i, x in enumerate(long) if x is flag]
            if not idx:
                continue
            enc = self.tokenizer_([headlines[i] for i in idx], [contexts[i] for i in idx], truncation=truncation,
                                  max_length=self.max_length)
            for key, rows in enc.items():
                column = out.setdefault(key, [None] * len(headlines))
                for i, row in zip(idx, rows):
                    column[i] = row
        return out

    def _pooled(self, headlines, contexts):
        batch = self.tokenizer_.pad(self._tokenize(headlines, contexts), return_tensors="pt").to(self.device)
        hidden = self.encoder_(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    def _logits(self, headlines, contexts):
        return self.head_(self._pooled(headlines, contexts))

    def fit(self, headlines: list[str], contexts: list[str], labels: list[str], same_event=None,
            pretrain=None) -> "CrossEncoder":
        """``same_event`` (optional): ``(first, second, same)`` story pairs and whether they report one event.
        A second head learns that on the shared encoder (more relatedness examples than stance labels give); it
        is only a training signal: predictions come from the stance head, and only that head is saved.

        ``pretrain`` (optional): ``(headlines, contexts, labels)`` of other stance data (e.g. FNC-1's real
        reporting) the encoder and the stance head also train on, ``pretrain_epochs`` passes: with
        ``pretrain_order="before"`` first (own warm-up and decay), with ``"mixed"`` its batches spread at random
        among the training pairs' in one run. Its labels must be among ``labels``."""
        self._score_identity = None  # of the weights before (if any)
        if pretrain is not None and not len(pretrain[0]):
            pretrain = None
        if pretrain is not None:
            extra = sorted(set(map(str, pretrain[2])) - set(map(str, labels)))
            if extra:
                raise ValueError(f"pretraining label {extra[0]!r} is not a label of the training pairs")
        fits = _FITS.get()
        if fits is not None:
            key = _fit_key(self, headlines, contexts, labels, same_event, pretrain)
            if key in fits:  # the same training again: share the fitted state (never changed after fit)
                self.__dict__.update({k: v for k, v in fits[key].__dict__.items() if k.endswith("_")})
                return self
            fits[key] = self._fit(headlines, contexts, labels, same_event, pretrain)
            # ... and its scores: settings sharing this fit score the same validation and held-out pairs again
            self.scored_ = {}
            return self
        return self._fit(headlines, contexts, labels, same_event, pretrain)

    def _loss(self, y):
        """Cross-entropy weighted as if the classes were balanced."""
        import torch

        counts = torch.bincount(y, minlength=len(self.classes_)).float()
        return torch.nn.CrossEntropyLoss(weight=counts.sum() / (len(counts) * counts.clamp(min=1)))

    def _train(self, batches, tasks: dict, params, desc: str, average: bool = False) -> None:
        """One training run: ``batches`` of (task, pair indices); ``tasks[task]`` = (first texts, second texts,
        head, targets, loss). AdamW with linear warm-up (a 15th of the steps) and linear decay.

        ``average`` with ``average_last`` a > 0 (stochastic weight averaging, Izmailov et al., 2018): the
        learning rate decays only until the last share a of the steps begins and then stays where it is, and the
        encoder and stance head end as the mean of their weights after each of those last steps."""
        import torch
        from torch.optim.swa_utils import AveragedModel
        from tqdm.auto import tqdm

        kind = self.device.split(":")[0]
        # fused AdamW: one kernel over all parameters (a tenth of a CPU step's time otherwise goes to the optimizer)
        optimizer = torch.optim.AdamW(self._param_groups(params), lr=self.learning_rate,
                                      fused=kind in ("cpu", "cuda", "xpu", "mps"))
        # bf16: forward and backward in bfloat16 autocast (weights and optimizer state stay fp32): ~1.7x faster
        # steps on CPUs with AMX, and on GPUs (build_stance falls back to fp32 elsewhere: bf16_is_fast)
        autocast = torch.autocast(kind, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        steps = len(batches)
        warmup = max(1, steps // 15)
        tail = int(round(self.average_last * steps)) if average else 0
        start = steps - tail  # the first averaged step
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - min(s, start) / steps))
        model = torch.nn.ModuleList([self.encoder_, self.head_])
        averaged = AveragedModel(model, device=self.device) if tail else None
        self.encoder_.train()
        for step, (task, idx) in enumerate(tqdm(batches, desc=desc, disable=not self.show_progress, mininterval=5)):
            a, b, head, target, criterion = tasks[task]
            with autocast:
                logits = head(self._pooled([a[i] for i in idx], [b[i] for i in idx]))
            loss = criterion(logits.float(), target[idx])  # the loss in fp32 whatever the autocast
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if averaged is not None and step >= start:
                averaged.update_parameters(model)
        if averaged is not None:
            with torch.no_grad():
                for mine, mean in zip(model.parameters(), averaged.module.parameters()):
                    mine.copy_(mean)
        self.encoder_.eval()

    def _param_groups(self, params) -> list[dict]:
        """``params`` as optimizer groups: with ``layer_decay`` d < 1 (layer-wise learning-rate decay) the heads
        and the top transformer layer train at ``learning_rate``, each layer below at d times the one above, the
        embeddings at d times the lowest layer, so fine-tuning moves the packaged lower layers less."""
        if self.layer_decay == 1:
            return [{"params": list(params), "lr": self.learning_rate}]
        layers = list(self.encoder_.encoder.layer)
        depth = {id(p): len(layers) for p in self.encoder_.embeddings.parameters()}
        for i, layer in enumerate(layers):
            depth.update({id(p): len(layers) - 1 - i for p in layer.parameters()})
        groups: dict[int, list] = {}
        for p in params:
            groups.setdefault(depth.get(id(p), 0), []).append(p)
        return [{"params": ps, "lr": self.learning_rate * self.layer_decay ** d} for d, ps in sorted(groups.items())]

    def _pretrain(self, pretrain) -> None:
        """Fine-tune the freshly built encoder and stance head on ``pretrain`` pairs; inside ``reuse_fits`` a
        pretraining already run on the same pairs and settings is loaded instead (folds of ``classify tune``
        share it)."""
        import torch

        fits = _FITS.get()
        key = _pretrain_key(self, pretrain, self.classes_)
        if fits is not None and ("pretrain", key) in fits:
            encoder, head = fits[("pretrain", key)]
            self.encoder_.load_state_dict(encoder)
            self.head_.load_state_dict(head)
            torch.manual_seed(self.seed + 1)  # the stance phase's dropout as after a pretraining run
            return
        task, batches = self._pretrain_task(pretrain)
        self._train(batches, {"pretrain": task}, self._trainable() + list(self.head_.parameters()),
                    "cross-encoder pretraining")
        if fits is not None:
            fits[("pretrain", key)] = ({k: v.detach().clone() for k, v in self.encoder_.state_dict().items()},
                                       {k: v.detach().clone() for k, v in self.head_.state_dict().items()})
        torch.manual_seed(self.seed + 1)  # the stance phase's dropout: the same whether pretraining ran or was loaded

    def _pretrain_task(self, pretrain):
        """The pretraining pairs as a task of ``_train`` (the stance head, class-balanced loss) and their batches
        (``pretrain_epochs`` passes)."""
        import torch

        first, second, labels = pretrain
        y = torch.tensor(np.searchsorted(self.classes_, np.asarray(labels))).to(self.device)
        batches = [("pretrain", b) for b in self._batches(first, second, len(labels), seed_offset=3,
                                                          epochs=self.pretrain_epochs)]
        return (first, second, self.head_, y, self._loss(y)), batches

    @staticmethod
    def _interleave(batches: list, extra: list, seed: int) -> list:
        """``batches`` and ``extra`` in one seeded random order."""
        rng = np.random.RandomState(seed)
        return [batches[i] if i < len(batches) else extra[i - len(batches)]
                for i in rng.permutation(len(batches) + len(extra))]

    def _fit(self, headlines, contexts, labels, same_event, pretrain=None) -> "CrossEncoder":
        global FITS_RUN
        import torch

        FITS_RUN += 1
        self.classes_ = np.unique(labels)
        self.head_arrays_ = self._ort = self.scored_ = None
        self._build(len(self.classes_))
        if self.linear_probe and len(self.classes_) > 1:  # one label: nothing to probe, the head's output is constant
            self._probe(headlines, contexts, labels, pretrain)
        if pretrain is not None and self.pretrain_order == "before":
            self._pretrain(pretrain)
        y = torch.tensor(np.searchsorted(self.classes_, labels)).to(self.device)
        tasks = {"stance": (headlines, contexts, self.head_, y, self._loss(y))}
        params = self._trainable() + list(self.head_.parameters())
        self.same_event_head_ = None
        batches = [("stance", b) for b in self._batches(headlines, contexts, len(labels))]
        if same_event is not None and len(same_event[0]):
            first, second, same = same_event
            aux_head = self.same_event_head_ = torch.nn.Linear(self.encoder_.config.hidden_size, 2).to(self.device)
            aux_y = torch.tensor(np.asarray(same, dtype=np.int64)).to(self.device)
            params += list(aux_head.parameters())
            tasks["same_event"] = (first, second, aux_head, aux_y, torch.nn.functional.cross_entropy)
            aux = [("same_event", b) for b in self._batches(first, second, len(first), seed_offset=1)]
            batches = self._interleave(batches, aux, self.seed + 2)
        if pretrain is not None and self.pretrain_order == "mixed":  # its batches spread among the stance batches
            tasks["pretrain"], pre = self._pretrain_task(pretrain)
            batches = self._interleave(batches, pre, self.seed + 4)
        self._train(batches, tasks, params, "cross-encoder", average=True)
        self.onnx_ = self._export() if self.runtime != "torch" else None
        return self

    def _probe(self, headlines, contexts, labels, pretrain=None) -> None:
        """Start the stance head from a linear probe (LP-FT, Kumar et al., ICLR 2022): a class-balanced logistic
        regression on the packaged encoder's pooled vectors of every training pair (and pretraining pair), so
        fine-tuning starts from a head that already fits instead of a random one and moves the encoder's features
        less. Measured on real pages: a worse reader than a random start (README, Stance on real pages, step 17)."""
        import torch
        from sklearn.linear_model import LogisticRegression

        first, second, y = list(headlines), list(contexts), [str(x) for x in labels]
        if pretrain is not None:
            first, second, y = first + list(pretrain[0]), second + list(pretrain[1]), y + [str(x) for x in pretrain[2]]
        self.encoder_.eval()
        pooled = self._in_length_batches(first, second, 64, self._pooled, self.encoder_.config.hidden_size, np.float32)
        probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(pooled, y)
        # every label of the pairs is a class (pretraining labels are among the training labels: checked in fit)
        weight, bias = probe.coef_, probe.intercept_
        if len(probe.classes_) == 2:  # binary: one row for the second class; softmax over (-z/2, z/2) is the same
            weight, bias = np.outer([-0.5, 0.5], weight[0]), np.array([-0.5, 0.5]) * bias[0]
        with torch.no_grad():
            self.head_.weight.copy_(torch.tensor(weight, dtype=self.head_.weight.dtype))
            self.head_.bias.copy_(torch.tensor(bias, dtype=self.head_.bias.dtype))

    def _trainable(self) -> list:
        """The encoder's parameters that training updates: all, or (``frozen_layers`` k > 0) those above its first
        k stages, which keep their packaged weights. The stages count as ``hidden_states`` does: 1 is the
        embeddings (word, position, type), 2 .. n+1 the n transformer layers. Autograd then stops at stage k + 1:
        no backward pass and no optimizer update below it."""
        stages = [self.encoder_.embeddings, *self.encoder_.encoder.layer]
        check_frozen_layers(self.frozen_layers, len(stages) - 1)
        for stage in stages[:self.frozen_layers]:
            stage.requires_grad_(False)
        return [p for p in self.encoder_.parameters() if p.requires_grad]

    def _batches(self, headlines, contexts, n: int, seed_offset: int = 0, epochs: float | None = None) -> list[np.ndarray]:
        """Training batches for ``epochs`` passes (default: the ``epochs`` setting): a seeded shuffle, then
        (``length_batches``) pairs of similar length batched together inside windows of 50 batches (less padding),
        and the batches shuffled again."""
        rng = np.random.RandomState(self.seed + seed_offset)
        total = max(self.batch_size, int(round((self.epochs if epochs is None else epochs) * n)))
        order = np.concatenate([rng.permutation(n) for _ in range(-(-total // n))])[:total]
        if not self.length_batches:
            return [order[i:i + self.batch_size] for i in range(0, total, self.batch_size)]
        lengths = np.array([len(headlines[i]) + len(contexts[i]) for i in order])
        window = self.batch_size * 50
        batches = []
        for start in range(0, total, window):
            chunk = order[start:start + window][np.argsort(lengths[start:start + window], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def predict_proba(self, headlines: list[str], contexts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order). With ``runtime: torch`` pairs are scored in
        batches of similar length (a pair's result depends on the others only by floating-point noise of
        padding); with an ONNX runtime in canonical batches (one token length, no padding; one pair a batch for
        int8, whose activation scales are per batch), so a pair's result depends on that pair alone.

        A fit shared inside ``reuse_fits`` also shares its scores: a pair scored once is not scored again; inside
        ``stored_scores`` an ONNX runtime's scores are read from and written to the store."""
        memo = getattr(self, "scored_", None)
        store = _SCORE_STORE.get() if memo is None and self.runtime != "torch" else None
        if memo is None and store is None:
            return self._score(headlines, contexts, batch_size)
        pairs = list(zip(headlines, contexts))
        known = memo if memo is not None else self._stored(store, pairs)
        todo = [k for k in dict.fromkeys(pairs) if k not in known]
        if todo:
            scores = self._score([h for h, _ in todo], [c for _, c in todo], batch_size)
            known.update(zip(todo, scores))
            if store is not None:  # ONNX scores are float32 softmax outputs: stored without loss
                store.put(self.score_identity(), [self._store_key(k) for k in todo], scores.astype(np.float32))
        return np.array([known[k] for k in pairs], dtype=np.float64).reshape(len(pairs), len(self.classes_))

    def score_identity(self) -> str:
        """What a stored score is keyed by: the ONNX export's bytes, the head's weights, the classes and the pair
        length."""
        if getattr(self, "_score_identity", None) is None:
            weight, bias = self._head_arrays()
            h = hashlib.sha256(self.onnx_)
            h.update(weight.tobytes() + bias.tobytes())
            h.update(json.dumps([list(map(str, self.classes_)), self.max_length, self.runtime]).encode())
            self._score_identity = f"cross-encoder#{h.hexdigest()[:32]}"
        return self._score_identity

    def _store_key(self, pair: tuple[str, str]) -> bytes:
        from .store import make_key

        return make_key(self.score_identity(), f"{pair[0]}\0{pair[1]}")

    def _stored(self, store, pairs: list[tuple[str, str]]) -> dict:
        """The scores ``store`` already holds for these pairs, by pair."""
        by_key = {self._store_key(p): p for p in dict.fromkeys(pairs)}
        found = store.get(self.score_identity(), list(by_key)) if by_key else {}
        return {by_key[k]: v for k, v in found.items()}

    def _score(self, headlines: list[str], contexts: list[str], batch_size: int) -> np.ndarray:
        if self.runtime != "torch":
            return self._onnx_proba(headlines, contexts, batch_size)
        import torch

        return self._in_length_batches(headlines, contexts, batch_size,
                                       lambda a, b: torch.softmax(self._logits(a, b), -1), len(self.classes_))

    def _in_length_batches(self, first, second, batch_size: int, fn, width: int, dtype=np.float64) -> np.ndarray:
        """``fn(first texts, second texts)`` (a tensor, one row per pair) run without gradients on batches of pairs
        of similar length (less padding), the rows put back in input order."""
        import torch

        out = np.zeros((len(first), width), dtype=dtype)
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second)], kind="stable")
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                out[idx] = fn([first[j] for j in idx], [second[j] for j in idx]).float().cpu().numpy()
        return out

    # ------------------------------------------------------------------------------------------------ onnx

    def _export(self) -> bytes:
        """The fitted encoder + mean pooling as an ONNX graph (fused; int8 weights for ``onnx-int8``), as bytes.
        The head stays outside the graph (it is a matrix product on the pooled vector)."""
        import tempfile

        from transformers import AutoModel

        from .backends import _quantize, export_pooled

        path = resolve_model_path(self.model)
        eager = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager")
        eager.load_state_dict({k: v.detach().cpu() for k, v in self.encoder_.state_dict().items()})
        with tempfile.TemporaryDirectory(prefix="classify-ce-") as tmp:
            fp32 = Path(tmp) / "model.onnx"
            export_pooled(eager.eval(), self.tokenizer_, fp32)
            if self.runtime == "onnx":
                return fp32.read_bytes()
            int8 = Path(tmp) / "model-int8.onnx"
            _quantize(fp32, int8)
            return int8.read_bytes()

    def _session(self):
        if getattr(self, "_ort", None) is None:
            import onnxruntime as ort

            from .backends import session_options

            self._ort = ort.InferenceSession(self.onnx_, session_options(), providers=["CPUExecutionProvider"])
            self._ort_inputs = [i.name for i in self._ort.get_inputs()]
        return self._ort

    def _head_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if getattr(self, "head_arrays_", None) is None:
            self.head_arrays_ = (self.head_.weight.detach().cpu().numpy().astype(np.float32),
                                 self.head_.bias.detach().cpu().numpy().astype(np.float32))
        return self.head_arrays_

    def _onnx_proba(self, headlines, contexts, batch_size: int) -> np.ndarray:
        from scipy.special import softmax

        from .backends import batch_rows, encode_canonical, onnx_workers

        session = self._session()
        enc = self._tokenize(headlines, contexts)
        ids = enc["input_ids"]
        types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]

        def run(padded):
            input_ids = np.asarray([ids[i] for i in padded], np.int64)
            feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
                    "token_type_ids": np.asarray([types[i] for i in padded], np.int64)}
            return session.run(None, {k: feed[k] for k in self._ort_inputs})[0]

        global SCORED
        SCORED += len(ids)
        pooled = encode_canonical([len(x) for x in ids], batch_rows(self.runtime, batch_size), run,
                                  workers=onnx_workers())
        if pooled is None:
            return np.zeros((0, len(self.classes_)))
        weight, bias = self._head_arrays()
        return softmax(pooled.astype(np.float32) @ weight.T + bias, axis=1).astype(np.float64)

    def __getstate__(self):  # an onnxruntime session is not copyable: deep copies build their own
        return {k: v for k, v in self.__dict__.items() if k not in ("_ort", "_ort_inputs")}

    def same_event_proba(self, first: list[str], second: list[str]) -> np.ndarray:
        """P(same event) of story pairs from the training-only head (``fit(..., same_event=...)``); not saved."""
        import torch

        if getattr(self, "same_event_head_", None) is None:
            raise ValueError("this cross-encoder was trained without same-event pairs (or was loaded from disk)")
        with torch.inference_mode():
            return torch.softmax(self.same_event_head_(self._pooled(first, second)), -1)[:, 1].cpu().numpy()

    ONNX_FILE = "cross_encoder.onnx"

    def save(self, folder: Path) -> None:
        """The trained weights (safetensors: encoder and head) and settings (JSON); with an ONNX runtime also the
        export it scores with (``cross_encoder.onnx``). A loaded model keeps its runtime (``load(runtime=...)``
        picks another: the weights are the same)."""
        if getattr(self, "encoder_", None) is None:  # loaded for an ONNX runtime: the weights as they were
            import shutil

            shutil.copyfile(self.weights_path_, folder / "cross_encoder.safetensors")
        else:
            from safetensors.torch import save_file

            state = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in self.encoder_.state_dict().items()}
            state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head_.state_dict().items()})
            save_file(state, str(folder / "cross_encoder.safetensors"))
        if self.runtime != "torch":
            (folder / self.ONNX_FILE).write_bytes(self.onnx_)
        params = {k: getattr(self, k) for k in ("model", "epochs", "learning_rate", "batch_size", "max_length", "seed",
                                                "length_batches", "runtime", "precision", "frozen_layers",
                                                "pretrain_epochs", "pretrain_order", "linear_probe", "layer_decay",
                                                "average_last")}
        (folder / "cross_encoder.json").write_text(json.dumps({"params": params, "classes": self.classes_.tolist()}))

    @classmethod
    def load(cls, folder: Path, runtime: str | None = None) -> "CrossEncoder":
        """The saved cross-encoder, scoring with its saved runtime, or ``runtime`` (an ONNX runtime the folder
        has no export for is exported now from the weights)."""
        info = json.loads((folder / "cross_encoder.json").read_text())
        params = {**info["params"], **({"runtime": runtime} if runtime else {})}
        self = cls(**params, show_progress=False)
        self.classes_ = np.array(info["classes"])
        onnx_path = folder / self.ONNX_FILE
        if self.runtime != "torch" and self.runtime == info["params"].get("runtime", "torch"):
            from safetensors import safe_open
            from transformers import AutoTokenizer

            from .errors import ModelError

            if not onnx_path.is_file():
                raise ModelError(f"{folder}: not a complete classify model, missing {self.ONNX_FILE}; retrain it")
            self.tokenizer_ = AutoTokenizer.from_pretrained(resolve_model_path(self.model), local_files_only=True)
            with safe_open(str(folder / "cross_encoder.safetensors"), framework="numpy") as fh:  # the head only
                self.head_arrays_ = (fh.get_tensor("head.weight").astype(np.float32),
                                     fh.get_tensor("head.bias").astype(np.float32))
            self.onnx_ = onnx_path.read_bytes()
            self.weights_path_ = folder / "cross_encoder.safetensors"
            self._session()  # an export onnxruntime cannot load is a model error now, not in the middle of predict
            return self
        from safetensors.torch import load_file

        self._build(len(self.classes_))
        state = load_file(str(folder / "cross_encoder.safetensors"))
        self.encoder_.load_state_dict({k[8:]: v.to(self.device) for k, v in state.items() if k.startswith("encoder.")})
        self.head_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        self.encoder_.eval()
        self.head_arrays_ = self._ort = None
        if self.runtime != "torch":
            self.onnx_ = self._export()
        return self
