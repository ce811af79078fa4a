"""The end-to-end jobs behind the CLI: train, predict, evaluate. Each is an importable function."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from .clusters import (NOISE, MapProjector, TopicClusterer, auto_k_range, lsa_features, make_reducer, representatives,
                       silhouette)
from .config import Config
from .data import Corpus, StancePair, check_trainable, load_corpus
from .dumps import Dump
from .embed import Embedder
from .errors import DataError
from sklearn.metrics import f1_score

from .metrics import (calibration_report, class_report, clustering_report, f_avg, fnc_score, has_favor_against,
                      label_f1, per_group_report, related_accuracy)
from .model import Model
from .crossencoder import (CrossEncoder, bf16_is_fast, check_device, check_frozen_layers, encoder_layers,
                           stored_scores)
from .stance import (StanceClassifier, StanceModel, best_sentences, first_words, has_negation, pair_embedding_texts,
                     split_sentences)

PREDICTION_COLUMNS = ["dump", "item", "kind", "title", "topic", "topic_score", "cluster", "cluster_id", "stance",
                      "stance_score"]


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def make_embedder(config: Config, quiet: bool = False) -> Embedder:
    e = config.embedding
    return Embedder(e.model, batch_size=e.batch_size, cache_dir=e.cache_dir, show_progress=not quiet, backend=e.backend,
                    long_texts=e.long_texts)


def log_long_texts(embedder, quiet: bool = False) -> None:
    """The run's one line on texts longer than the encoder's window (nothing when there were none)."""
    line = getattr(embedder, "long_texts_line", lambda: None)()
    if line:
        log(line, quiet)


def build_clusterer(config: Config, quiet: bool = True) -> TopicClusterer:
    c = config.clustering
    reducer = None
    if c.reducer is not None:
        r = c.reducer
        reducer = make_reducer(r.n_components, r.n_neighbors, r.min_dist, r.metric, config.seed, verbose=not quiet)
    return TopicClusterer(algorithm=c.algorithm, n_clusters=c.n_clusters or len(config.labels.topics),
                          min_cluster_size=c.min_cluster_size, reducer=reducer, use_reducer=c.reducer is not None,
                          knn=c.knn, min_purity=c.min_purity, n_keywords=c.keywords, random_state=config.seed)


def cluster_inputs(config: Config, X: np.ndarray, texts: list[str]) -> np.ndarray | None:
    """What the clusterer sees: the embeddings, optionally with weighted LSA dimensions appended."""
    c = config.clustering
    if not c.lsa_components:
        return None
    return np.hstack([X, c.lsa_weight * lsa_features(texts, c.lsa_components, config.seed)])


def build_stance(config: Config, quiet: bool = False) -> StanceModel:
    """The (unfitted) stance model the config describes."""
    st, s, ce = config.stance, config.stance.classifier, config.stance.cross_encoder
    classifier = StanceClassifier(kind=s.type, C=s.C, class_weight=s.class_weight, max_iter=s.max_iter,
                                  learning_rate=s.learning_rate, max_leaf_nodes=s.max_leaf_nodes,
                                  two_stage=st.two_stage, unrelated_label=config.labels.unrelated,
                                  tune_scale=st.tune_class_scale, validation_size=st.validation_size,
                                  random_state=config.seed, show_progress=not quiet)
    cross_encoder = None
    if ce.enabled:
        check_device(ce.device)
        if ce.frozen_layers:
            check_frozen_layers(ce.frozen_layers, encoder_layers(config.embedding.model))
        precision = ce.precision
        if precision == "bf16" and not bf16_is_fast(ce.device):
            log(f"stance.cross_encoder.precision: bf16 has no hardware support on {ce.device} here (a CPU needs "
                "AMX: amx_bf16 in lscpu); training in fp32", quiet)
            precision = "fp32"
        # with several story views each pair comes len(views) times: the same number of steps as one view
        cross_encoder = CrossEncoder(config.embedding.model, ce.epochs / len(st.views), ce.learning_rate, ce.batch_size,
                                     ce.max_length, config.seed, show_progress=not quiet,
                                     length_batches=ce.length_batches, device=ce.device, runtime=ce.runtime,
                                     precision=precision, frozen_layers=ce.frozen_layers,
                                     pretrain_epochs=ce.pretrain_epochs, pretrain_order=ce.pretrain_order,
                                     linear_probe=ce.linear_probe, layer_decay=ce.layer_decay,
                                     average_last=ce.average_last)
    return StanceModel(classifier, cross_encoder, mode=ce.labels, weight=ce.weight, top_k=st.top_sentences,
                       context=st.context,
                       embedding_features=st.embedding_features, calibrate=st.calibrate,
                       text_embedding=(config.labels.unrelated is None if st.text_embedding is None else st.text_embedding),
                       tune_scale=st.tune_class_scale, validation_size=st.validation_size, refit_cross_encoder=ce.refit,
                       term_weights=st.term_weights, same_event=ce.same_event,
                       same_event_max_similarity=st.hard_negative_max_similarity,
                       confidence_on_mined=st.confidence_on_mined,
                       classifier_pretrain_stage=ce.pretrain_classifier_stage, random_state=config.seed,
                       log=None if quiet else log)


def memoised(embed, texts: list[str]):
    """An ``embed`` over a fixed set of texts, encoded once: stance features and the cross-encoder's context
    selection look up the same vectors."""
    texts = list(dict.fromkeys(texts))
    vectors = dict(zip(texts, embed(texts))) if texts else {}

    def lookup(ts):
        return np.stack([vectors[t] for t in ts]) if len(ts) else np.zeros((0, 0), dtype=np.float32)
    # the embedder's identity (model, backend, ...) where known: what stance.reuse_features keys on
    lookup.identity = getattr(embed, "identity", None) or getattr(getattr(embed, "__self__", None), "identity", None)
    return lookup


def story_view(body: str, view: str) -> str:
    """A story as a page may show it: ``full``, ``lead`` (title and first sentence) or ``title`` (the first
    sentence of title + snippet, which is the title)."""
    if view == "full":
        return body
    sentences = split_sentences(body)
    return " ".join(sentences[: 1 if view == "title" else 2])


def story_views(pairs: list[StancePair], views: list[str]) -> list[StancePair]:
    """Every pair once per view (same label and group), views of a pair that read the same text once: a story's
    length then says nothing about its label, whatever lengths the writers of each label happened to use."""
    out = []
    for p in pairs:
        seen = set()
        for view in views:
            body = story_view(p.body, view)
            if body not in seen:
                seen.add(body)
                out.append(dataclasses.replace(p, body=body, view=view))
    return out


def hard_negatives(pairs: list[StancePair], embed, k: int, unrelated: str,
                   max_similarity: float | None = None) -> list[StancePair]:
    """For every headline, the ``k`` stories most similar to it (cosine of the embeddings) among stories of a
    known, different event, as ``unrelated`` pairs. Stories of an unknown event, stories already paired with
    the headline and, with ``max_similarity``, stories closer to it than that cosine (at that closeness two
    writers' "different" events are often one event under two ids: a wrong `unrelated` label) are never drawn.
    Deterministic: ties go to the earlier story."""
    heads = list(dict.fromkeys(p.headline for p in pairs))
    group = {p.headline: p.group or p.headline for p in pairs}
    source = {p.headline: p.source for p in pairs}
    event_of: dict[str, str] = {}
    for p in pairs:
        if p.body_event:
            event_of.setdefault(p.body, p.body_event)
    bodies, events = list(event_of), list(event_of.values())
    if not heads or not bodies:
        return []
    paired = {(p.headline, p.body) for p in pairs}
    sims = embed(heads) @ embed(bodies).T
    events = np.array(events)
    out = []
    for i, h in enumerate(heads):
        order = np.argsort(-sims[i], kind="stable")
        picked = [j for j in order if events[j] != group[h] and (h, bodies[j]) not in paired
                  and (max_similarity is None or sims[i, j] <= max_similarity)][:k]
        out += [StancePair(h, bodies[j], unrelated, group[h], source[h], events[j], mined=rank)
                for rank, j in enumerate(picked, 1)]
    return out


def stance_proba(model: Model, headlines: list[str], bodies: list[str], embed) -> np.ndarray:
    """The stance model's calibrated probabilities of each pair, columns in ``model.stance.classes_`` order."""
    texts = pair_embedding_texts(headlines, bodies, model.stance.context)
    return model.stance.predict_proba(headlines, bodies, memoised(embed, texts))


def stance_predict(model: Model, headlines: list[str], bodies: list[str], embed) -> tuple[np.ndarray, np.ndarray]:
    """Stance labels and their (calibrated) probabilities."""
    proba = stance_proba(model, headlines, bodies, embed)
    labels = model.stance.decide(proba)
    return labels, proba.max(axis=1) if len(proba) else np.zeros(0)


def train(config: Config, quiet: bool = False, embedder: Embedder | None = None) -> Model:
    """Train every component the config and its data allow; returns the model (not yet saved)."""
    start = time.perf_counter()
    embedder = embedder or make_embedder(config, quiet)
    corpus = load_corpus(config.data.train, config)
    return train_corpus(config, corpus, quiet=quiet, embedder=embedder, start=start)


def train_corpus(config: Config, corpus: Corpus, quiet: bool = False, embedder: Embedder | None = None,
                 start: float | None = None, progress: bool | None = None, fitted: dict | None = None,
                 map_projection: bool = True) -> Model:
    """``train`` on a corpus already loaded (``classify tune`` passes the training part of each fold).
    ``progress``: show the long fits' bars and stance lines (default: ``not quiet``; ``tune`` shows them while
    keeping the rest of each fold's training quiet). ``fitted``: a dict kept across calls (``tune``'s settings
    of one fold): a topic classifier or clusterer fitted before on the same texts, labels and settings is used
    again (fitting is deterministic, and a fitted part is never changed). ``map_projection: false`` skips the
    2-D map of the training texts (plots only: nothing is scored on it)."""
    start = time.perf_counter() if start is None else start
    fits_quiet = quiet if progress is None else not progress
    embedder = embedder or make_embedder(config, quiet)
    if not corpus.texts and not corpus.pairs:
        raise DataError("data.train: the training sources hold no examples")
    check_trainable(corpus, config)
    log(f"training data: {len(corpus.texts)} topic texts, {len(corpus.pairs)} stance pairs", quiet)
    model = Model(config=config)
    # built (and its device and frozen layers checked) before any fitting: a bad setting fails at once
    stance = build_stance(config, fits_quiet) if corpus.pairs and config.stance.enabled else None

    if corpus.texts and (config.topic.enabled or config.clustering.enabled):
        X = embedder.encode(corpus.texts)
        inputs = _inputs_key(config, corpus) if fitted is not None else None
        if config.topic.enabled:
            t = config.topic

            def fit_topic():
                return LogisticRegression(C=t.C, class_weight=t.class_weight, max_iter=t.max_iter,
                                          random_state=config.seed).fit(X, corpus.topics)

            model.topic = _reuse(fitted, ("topic", inputs, t.model_dump_json()), fit_topic)
        if config.clustering.enabled:
            c = config.clustering
            log(("clustering (UMAP + " if c.reducer is not None else "clustering (") + c.algorithm + ")", quiet)
            clusterer = _reuse(fitted, ("clustering", inputs, c.model_dump_json()), lambda: build_clusterer(
                config, fits_quiet).fit(X, corpus.topics, cluster_inputs(config, X, corpus.texts), texts=corpus.texts))
            model.clusterer = clusterer
            if map_projection:
                model.projector = MapProjector(method=c.map_method, random_state=config.seed,
                                               verbose=not fits_quiet).fit(X)
            labels = clusterer.labels_
            model.clusters_info = {
                "keywords": {str(k): v for k, v in clusterer.keywords_.items()},
                "examples": {str(k): v for k, v in representatives(X, labels, corpus.texts).items()},
            }
            model.meta["clustering"] = clustering_meta(clusterer, len(X))
            if c.n_clusters == "auto" and c.algorithm == "kmeans":
                k_range = auto_k_range(len(X))
                score = clusterer.k_scores_.get(clusterer.n_clusters_)
                log(f"clustering.n_clusters auto: k = {clusterer.n_clusters_} (best silhouette "
                    f"{'n/a' if score is None else f'{score:.3f}'} over k = {k_range.start}..{k_range.stop - 1}, "
                    f"{'UMAP space, euclidean' if clusterer.use_reducer else 'features, cosine'})", quiet)

    if stance is not None:
        st = config.stance
        pairs = corpus.pairs
        validating = stance._validates()
        mine = max(st.hard_negatives, st.validation_hard_negatives if validating else 0)
        if mine and config.labels.unrelated:
            extra = hard_negatives(pairs, embedder.encode, mine, config.labels.unrelated,
                                   st.hard_negative_max_similarity)
            log(f"hard negatives: {sum(p.mined <= st.hard_negatives for p in extra)} unrelated pairs of similar "
                f"stories of other events to train on"
                + (f", up to {st.validation_hard_negatives} per headline to validate on" if validating else ""), quiet)
            pairs = pairs + extra
        if st.views != ["full"]:
            pairs = story_views(pairs, st.views)
            log(f"story views {'/'.join(st.views)}: {len(pairs)} training pairs", quiet)
        headlines, bodies = [p.headline for p in pairs], [p.body for p in pairs]
        pretrain = classifier_pretrain = pages = None
        if st.cross_encoder.enabled and st.cross_encoder.pretrain:
            # the same for every setting of a `classify tune` fold that leaves these keys alone: read once a fold
            # (how the cross-encoder trains on them, pretrain_epochs and pretrain_order, is not part of the draw)
            ce = st.cross_encoder
            parts = [[src.model_dump(mode="json") for src in ce.pretrain], ce.pretrain_pairs, ce.pretrain_unrelated,
                     ce.pretrain_unrelated_share, config.seed, st.top_sentences, st.context,
                     config.labels.model_dump(mode="json"), config.embedding.model_dump(mode="json"),
                     ce.pretrain_classifier_words, ce.pretrain_words, ce.pretrain_calibration,
                     ce.pretrain_calibration_pages, ce.pretrain_calibration_words,
                     ce.pretrain_calibration_unrelated_share]
            key = json.dumps(parts, allow_nan=False)
            pretrain, drawn, classifier_pretrain, pages = _reuse(fitted, ("pretrain", key),
                                                                 lambda: pretraining_pairs(config, embedder, quiet))
            model.meta["cross_encoder_pretrain"] = {**drawn, "epochs": ce.pretrain_epochs, "order": ce.pretrain_order,
                                                    "words": ce.pretrain_words,
                                                    "classifier_words": ce.pretrain_classifier_words,
                                                    "classifier_stage": ce.pretrain_classifier_stage}
        texts = pair_embedding_texts(headlines, bodies, st.context)
        if classifier_pretrain is not None:
            texts += pair_embedding_texts(classifier_pretrain[0], classifier_pretrain[1], st.context)
        embed = memoised(embedder.encode, texts)
        model.stance = stance.fit(
            headlines, bodies, [p.label for p in pairs], embed, groups=[p.group or p.headline for p in pairs],
            tune_on=[p.view == "full" and p.mined <= st.validation_hard_negatives for p in pairs],
            train_on=[p.mined <= st.hard_negatives for p in pairs],
            body_events=[p.body_event for p in pairs], written=[p.mined == 0 for p in pairs], pretrain=pretrain,
            classifier_pretrain=classifier_pretrain)
        if pages is not None:  # real reporting as pages: the calibration the model will be read with
            model.stance.calibrate_on(*pages[:2], pages[2], memoised(embedder.encode, pair_embedding_texts(
                pages[0], pages[1], st.context)))

    log_long_texts(embedder, quiet)
    model.meta = {
        **model.meta,
        "training": {
            "seconds": round(time.perf_counter() - start, 1),
            "topic_texts": len(corpus.texts),
            "topic_counts": dict(Counter(t for t in corpus.topics if t is not None)),
            "unlabelled_topic_texts": sum(t is None for t in corpus.topics),
            "stance_pairs": len(corpus.pairs),
            "stance_counts": dict(Counter(p.label for p in corpus.pairs)),
            "stance_validation": model.stance.validation_ if model.stance is not None else None,
        },
        "labels": {"topics": config.labels.topics, "stances": config.labels.stances},
    }
    return model


def draw_pretraining(pairs: list, n: int, seed: int, closeness=None, closest: str | None = None,
                     share: tuple[str, float] | None = None) -> list:
    """At most ``n`` pairs, an equal share per label (all of a label that has fewer; what they leave goes to the
    others), drawn by ``seed``, in the order of ``pairs``. With ``closest`` (a label) and ``closeness`` (a number
    per pair), that label's pairs are taken closest first instead of at random. With ``share`` (label, fraction)
    that label gets ``round(fraction * n)`` pairs (all it has, if fewer) and the others share the rest."""
    by_label: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_label.setdefault(p.label, []).append(i)
    rng = np.random.RandomState(seed)
    order = {label: rng.permutation(idx).tolist() for label, idx in sorted(by_label.items())}
    if closest in order and closeness is not None:
        order[closest] = sorted(order[closest], key=lambda i: -closeness[i])  # stable: ties stay in the draw's order
    fixed = {share[0]: int(round(share[1] * n))} if share is not None and share[0] in order else {}
    rest = sorted((k for k in order if k not in fixed), key=lambda k: (len(order[k]), k))  # the smallest first
    quota, left, chosen = {}, n, []
    for label in [*fixed, *rest]:
        quota[label] = min(len(order[label]), fixed.get(label, left // (len(order) - len(quota))))
        left -= quota[label]
        chosen += order[label][:quota[label]]
    return [pairs[i] for i in sorted(chosen)]


PRETRAIN_LEAD_CHARS = 1000
PRETRAIN_MINED_PER_HEADLINE = 2
MINING_BLOCK = 1024


def claim_parts(pairs: list, unrelated: str) -> dict[str, int]:
    """The claim of each headline and body text: connected parts of the graph of related (headline, body) pairs
    (a body no related pair reaches is a claim of its own)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes: dict[tuple[str, str], int] = {}
    for p in pairs:
        nodes.setdefault(("h", p.headline), len(nodes))
        nodes.setdefault(("b", p.body), len(nodes))
    edges = [(nodes[("h", p.headline)], nodes[("b", p.body)]) for p in pairs if p.label != unrelated]
    rows, cols = zip(*edges) if edges else ((), ())
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, part = connected_components(graph, directed=False)
    return {key: int(part[i]) for key, i in nodes.items()}


def hold_out_claims(pairs: list, unrelated: str, share: float, seed: int) -> tuple[list, set[int], dict]:
    """A seeded draw of about ``share`` of the claims (``claim_parts``; the claims of headlines, ids in order, one
    uniform number each): the pairs that stay (neither headline nor body in a held-out claim), the held-out claim
    ids, and ``claim_parts``' map."""
    claim = claim_parts(pairs, unrelated)
    ids = sorted({claim[("h", p.headline)] for p in pairs})
    held = {c for c, u in zip(ids, np.random.RandomState(seed).rand(len(ids))) if u < share}
    kept = [p for p in pairs if claim[("h", p.headline)] not in held and claim[("b", p.body)] not in held]
    return kept, held, claim


def claim_pages(pairs: list, held: set[int], claim: dict, unrelated: str, n_pages: int, words: list[int],
                unrelated_share: float, seed: int, embed) -> tuple[list[str], list[str], list[str]]:
    """News pages of held-out claims, as (headlines, stories, labels): a seeded draw of at most ``n_pages`` of
    their headlines (those with a related story), each with its related stories and, as ``unrelated``, the
    stories of other claims closest to it (cosine of the headline and the body's first ``PRETRAIN_LEAD_CHARS``
    characters, embedded; ties keep the bodies' first-seen order), so that about ``unrelated_share`` of the page
    is other claims; the page is laid out once per lead length in ``words``, each story cut to its first N words."""
    related: dict[str, dict[str, str]] = {}
    for p in pairs:
        if p.label != unrelated and claim[("h", p.headline)] in held:
            related.setdefault(p.headline, {}).setdefault(p.body, p.label)
    heads = sorted(related)
    if not heads:
        return [], [], []
    pick = np.random.RandomState(seed).choice(len(heads), min(n_pages, len(heads)), replace=False)
    heads = [heads[i] for i in sorted(pick)]
    bodies = list(dict.fromkeys(p.body for p in pairs))
    body_claim = np.array([claim[("b", b)] for b in bodies])
    vectors = np.asarray(embed(heads + [b[:PRETRAIN_LEAD_CHARS] for b in bodies]), dtype=float)
    vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    head_vectors, body_vectors = vectors[: len(heads)], vectors[len(heads):]
    out: tuple[list[str], list[str], list[str]] = ([], [], [])
    for i, h in enumerate(heads):
        stories = list(related[h].items())
        k = int(round(len(stories) * unrelated_share / (1 - unrelated_share)))
        other = np.flatnonzero(body_claim != claim[("h", h)])
        picked = other[np.argsort(-(body_vectors[other] @ head_vectors[i]), kind="stable")[:k]]
        stories += [(bodies[j], unrelated) for j in picked]
        for n in words:
            for body, label in stories:
                out[0].append(h)
                out[1].append(first_words(body, n))
                out[2].append(label)
    return out


def mined_unrelated(pairs: list, embed, unrelated: str, per_headline: int = PRETRAIN_MINED_PER_HEADLINE):
    """``per_headline`` new ``unrelated`` pairs for each headline: the bodies closest to it (cosine of the headline
    and the body's first ``PRETRAIN_LEAD_CHARS`` characters, embedded) among all the pairs' bodies of other claims
    (``claim_parts``), and their cosines. Deterministic: ties keep the bodies' first-seen order."""
    claim = claim_parts(pairs, unrelated)
    heads = list(dict.fromkeys(p.headline for p in pairs))
    bodies = list(dict.fromkeys(p.body for p in pairs))
    leads = [b[:PRETRAIN_LEAD_CHARS] for b in bodies]
    vectors = np.asarray(embed(heads + leads), dtype=float)
    vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    head_vectors, body_vectors = vectors[: len(heads)], vectors[len(heads):]
    body_claim = np.array([claim[("b", b)] for b in bodies])
    out, closeness = [], []
    for start in range(0, len(heads), MINING_BLOCK):  # a block of headlines at a time: memory stays bounded
        sims = head_vectors[start:start + MINING_BLOCK] @ body_vectors.T
        for i, h in enumerate(heads[start:start + MINING_BLOCK]):
            other = np.flatnonzero(body_claim != claim[("h", h)])
            picked = other[np.argsort(-sims[i, other], kind="stable")[:per_headline]]
            out += [StancePair(h, bodies[j], unrelated, source="mined") for j in picked]
            closeness += [float(sims[i, j]) for j in picked]
    return out, closeness


def pretraining_pairs(config: Config, embedder: Embedder, quiet: bool = False):
    """The cross-encoder's pretraining pairs (``stance.cross_encoder.pretrain``) as it reads them: (headlines,
    contexts, labels), contexts being each body's ``stance.top_sentences`` sentences closest to its headline (with
    ``pretrain_words`` N, among its first N words: with ``stance.context: body``, those words whole); and what was
    drawn (``pairs``, ``of``, ``counts``, ``unrelated``: meta.json's ``cross_encoder_pretrain`` less how it was
    trained on; ``unrelated_share``: ``pretrain_unrelated_share``). With ``pretrain_unrelated: closest``
    the unrelated pairs drawn are those whose body's opening (its first 1,000 characters, embedded) is closest to
    the headline: a recommender's picks among stories the data labels as another claim's; with ``mined``, the
    unrelated pairs are ``mined_unrelated``'s instead of the data's, the closest drawn first. Third: with
    ``pretrain_classifier_words`` N, the same pairs as the feature classifier reads them, (headlines, each body's
    first N words, labels); else None."""
    ce = config.stance.cross_encoder
    loaded = load_corpus(ce.pretrain, config).pairs
    if not loaded:
        raise DataError("stance.cross_encoder.pretrain: the pretraining sources hold no stance pairs")
    closeness, unrelated = None, config.labels.unrelated
    pages = calibration = None
    if ce.pretrain_calibration and unrelated:
        every = loaded
        loaded, held, claim = hold_out_claims(every, unrelated, ce.pretrain_calibration, config.seed)
        pages = claim_pages(every, held, claim, unrelated, ce.pretrain_calibration_pages,
                            ce.pretrain_calibration_words, ce.pretrain_calibration_unrelated_share, config.seed,
                            embedder.encode)
        n_claims = len({claim[("h", p.headline)] for p in every})
        if not pages[0]:
            raise DataError(f"stance.cross_encoder.pretrain_calibration: {ce.pretrain_calibration} of the pretraining "
                            f"claims ({n_claims}) holds out no headline with a related story to lay out as a page; "
                            "raise the share or set it to 0")
        calibration = {"share": ce.pretrain_calibration, "claims": len(held), "of": n_claims,
                       "pairs_held_out": len(every) - len(loaded),
                       "pages": len(dict.fromkeys(pages[0])), "words": list(ce.pretrain_calibration_words),
                       "unrelated_share": ce.pretrain_calibration_unrelated_share,
                       "counts": dict(sorted(Counter(pages[2]).items()))}
        log(f"pretraining calibration: {len(held)} of {calibration['of']} claims held out, "
            f"{calibration['pages']} pages, {len(pages[0])} pairs", quiet)
        if not loaded:
            raise DataError("stance.cross_encoder.pretrain_calibration: holding out the calibration claims leaves no "
                            "pretraining pairs; lower the share")
    if ce.pretrain_unrelated == "mined" and unrelated:
        related = [p for p in loaded if p.label != unrelated]
        mined, near = mined_unrelated(loaded, embedder.encode, unrelated)
        loaded, closeness = related + mined, [0.0] * len(related) + near
    elif ce.pretrain_unrelated == "closest" and unrelated and any(p.label == unrelated for p in loaded):
        heads = sorted({p.headline for p in loaded if p.label == unrelated})
        leads = sorted({p.body[:PRETRAIN_LEAD_CHARS] for p in loaded if p.label == unrelated})
        vectors = dict(zip(heads + leads, embedder.encode(heads + leads)))
        closeness = [float(vectors[p.headline] @ vectors[p.body[:PRETRAIN_LEAD_CHARS]]) if p.label == unrelated
                     else 0.0 for p in loaded]
    share = None if ce.pretrain_unrelated_share is None or not unrelated else (unrelated, ce.pretrain_unrelated_share)
    drawn = draw_pretraining(loaded, ce.pretrain_pairs, config.seed, closeness, unrelated, share)
    headlines, bodies = [p.headline for p in drawn], [p.body for p in drawn]
    counts = dict(sorted(Counter(p.label for p in drawn).items()))
    log(f"cross-encoder pretraining: {len(drawn)} of {len(loaded)} pairs ("
        + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")", quiet)
    context = config.stance.context
    read = [first_words(b, ce.pretrain_words) for b in bodies] if ce.pretrain_words else bodies
    contexts = best_sentences(headlines, read,
                              memoised(embedder.encode, pair_embedding_texts(headlines, read, context)),
                              config.stance.top_sentences, context)
    labels = [p.label for p in drawn]
    words = ce.pretrain_classifier_words
    snippets = (headlines, [first_words(b, words) for b in bodies], labels) if words else None
    info = {"pairs": len(drawn), "of": len(loaded), "counts": counts, "unrelated": ce.pretrain_unrelated,
            "unrelated_share": ce.pretrain_unrelated_share}
    if calibration is not None:
        info["calibration"] = calibration
    return (headlines, contexts, labels), info, snippets, pages


def _inputs_key(config: Config, corpus: Corpus) -> str:
    """What a topic classifier or clusterer is fitted from besides its own settings: the texts, their labels,
    the label set, the encoder and the seed."""
    inputs = [config.embedding.model_dump(mode="json"), config.labels.topics, config.seed, corpus.texts, corpus.topics]
    return hashlib.sha256(json.dumps(inputs, allow_nan=False).encode()).hexdigest()


def _reuse(fitted: dict | None, key: tuple, fit):
    if fitted is None:
        return fit()
    if key not in fitted:
        fitted[key] = fit()
    return fitted[key]


def clustering_meta(clusterer: TopicClusterer, n: int) -> dict:
    """What the model's meta.json says of its clusters: k (and how it was chosen), the training silhouette."""
    out = {"n_clusters": clusterer.n_clusters_, "chosen_by": "config",
           "training_silhouette": None if clusterer.silhouette_ is None else round(clusterer.silhouette_, 4),
           "space": "umap" if clusterer.use_reducer else "features", "metric": clusterer.space_metric}
    if clusterer.k_scores_:
        k = auto_k_range(n)
        out.update(chosen_by="silhouette", k_range=[k.start, k.stop - 1],
                   silhouette_by_k={str(a): b for a, b in clusterer.k_scores_.items()})
    if clusterer.algorithm == "hdbscan":
        out["chosen_by"] = "hdbscan"
    return out


def predict_dumps(model: Model, dumps: list[Dump], embedder: Embedder | None = None, quiet: bool = False) -> pd.DataFrame:
    """One row per text: the article (item 0) and its related stories (1..), with topic, cluster and stance.

    All texts of the run are embedded in one pass; every row depends only on its own dump.
    """
    embedder = embedder or make_embedder(model.config, quiet)
    rows, texts = [], []
    for d in dumps:
        rows.append({"dump": d.path, "item": 0, "kind": "article", "title": d.headline})
        texts.append(d.text)
        for j, r in enumerate(d.related, 1):
            rows.append({"dump": d.path, "item": j, "kind": "related", "title": r.title})
            texts.append(r.text)
    df = pd.DataFrame(rows, columns=["dump", "item", "kind", "title"])
    heads = [d.headline for d in dumps for _ in d.related]
    bodies = [r.text for d in dumps for r in d.related]
    stance_texts = pair_embedding_texts(heads, bodies, model.stance.context) if model.stance is not None else []
    if not texts:
        return df.reindex(columns=PREDICTION_COLUMNS)

    vectors = embedder.encode(texts + stance_texts)
    log_long_texts(embedder, quiet)
    X = vectors[: len(texts)]
    lookup = dict(zip(texts + stance_texts, vectors))

    topic_and_cluster(model, X, df)
    df["stance"], df["stance_score"] = None, np.nan
    if model.stance is not None and heads:
        with stored_scores(getattr(embedder, "store", None)):
            labels, scores = stance_predict(model, heads, bodies, lambda ts: np.stack([lookup[t] for t in ts]))
        related = (df["kind"] == "related").to_numpy()
        df.loc[related, "stance"] = labels
        df.loc[related, "stance_score"] = scores.round(4)
    return df[PREDICTION_COLUMNS]


def topic_and_cluster(model: Model, X: np.ndarray, df: pd.DataFrame) -> None:
    """Fill ``df``'s topic, topic_score, cluster and cluster_id columns for the texts embedded as ``X`` (one row
    each, in order); None / NaN where the model has no such component."""
    df["topic"], df["topic_score"] = None, np.nan
    if model.topic is not None:
        proba = model.topic.predict_proba(X)
        df["topic"] = model.topic.classes_[proba.argmax(axis=1)]
        df["topic_score"] = proba.max(axis=1).astype(np.float64).round(4)  # float64: no float32 noise in JSON
    df["cluster"], df["cluster_id"] = None, None
    if model.clusterer is not None:
        ids = model.clusterer.predict(X)
        df["cluster_id"] = ids
        df["cluster"] = model.clusterer.names_of(ids)


def stance_report(gold, pred, scores, bodies, sources, config: Config, groups=None) -> dict:
    """Per-class scores, calibration of ``stance_score``, the related/unrelated accuracy and FNC score (schemes
    with an unrelated label), F_avg (schemes with favor and against), ``disagree`` F1 on stories without negation
    words, scores per data source and per group (``groups``: each pair's headline / target)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    report = class_report(gold.tolist(), pred.tolist(), config.labels.stances)
    favor_against = has_favor_against(config.labels.stances)
    if favor_against:
        report["f_avg"] = f_avg(gold, pred)
    report["calibration"] = calibration_report(scores, gold == pred)
    unrelated = config.labels.unrelated
    if unrelated:
        report["fnc_score"] = fnc_score(gold, pred, unrelated)
        report["related_accuracy"] = related_accuracy(gold, pred, unrelated)
    if "disagree" in config.labels.stances:
        plain = np.array([not has_negation(b) for b in bodies], dtype=bool)
        report["disagree_without_negation"] = {
            "f1": label_f1(gold[plain], pred[plain], "disagree"), "pairs": int(plain.sum()),
            "disagree_pairs": int(((gold == "disagree") & plain).sum())}
    sources = np.asarray(sources)
    if len(set(sources)) > 1:
        report["by_source"] = {}
        for name in dict.fromkeys(sources):
            m = sources == name
            part = {"n": int(m.sum()), "accuracy": float(np.mean(gold[m] == pred[m])),
                    "macro_f1": float(f1_score(gold[m], pred[m], labels=config.labels.stances, average="macro",
                                               zero_division=0))}
            if unrelated:
                part["related_accuracy"] = related_accuracy(gold[m], pred[m], unrelated)
            report["by_source"][name] = part
    if groups is not None:
        report["per_group"] = per_group_report(gold, pred, groups, favor_against)
    return report


def evaluate(model: Model, corpus: Corpus, embedder: Embedder | None = None, quiet: bool = False) -> dict:
    """Scores of the model on labelled data: topic, clustering and stance reports."""
    embedder = embedder or make_embedder(model.config, quiet)
    start = time.perf_counter()
    report: dict = {"data": {"topic_texts": len(corpus.texts), "stance_pairs": len(corpus.pairs)}}
    if corpus.texts and (model.topic is not None or model.clusterer is not None):
        X = embedder.encode(corpus.texts)
        if model.topic is not None:
            report["topic"] = class_report(corpus.topics, model.topic.predict(X).tolist(), model.topics)
        if model.clusterer is not None:
            report["clustering"] = cluster_evaluation(model, X, corpus.topics)
    if corpus.pairs and model.stance is not None:
        heads = [p.headline for p in corpus.pairs]
        bodies = [p.body for p in corpus.pairs]
        t = time.perf_counter()
        pred, scores = stance_predict(model, heads, bodies, embedder.encode)
        seconds = time.perf_counter() - t
        gold = np.array([p.label for p in corpus.pairs])
        report["stance"] = stance_report(gold, pred, scores, bodies, [p.source for p in corpus.pairs], model.config,
                                         groups=heads)
        report["stance"]["pairs_per_second"] = round(len(gold) / max(seconds, 1e-9), 1)
    log_long_texts(embedder, quiet)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def cluster_evaluation(model: Model, X: np.ndarray, topics: list) -> dict:
    """What needs no labels: the silhouette of the texts' clusters and the cluster sizes (here and in training);
    where texts have topics, also NMI, ARI, best-matching accuracy and the accuracy of the topic names.

    ``silhouette``: the evaluated texts, in the space ``predict`` assigns them in (embeddings, cosine);
    ``training_silhouette``: the training texts in the space the clusterer clustered in (UMAP output, euclidean;
    the features, cosine, without a reducer), from the model."""
    c = model.clusterer
    ids = c.predict(X) if len(X) else np.zeros(0, dtype=np.int64)
    names = dict(zip(c.cluster_ids_.tolist(), c.cluster_names_))
    counts = Counter(int(i) for i in ids)
    out: dict = {"n": len(ids), "n_clusters": int(len(set(c.labels_.tolist()) - {NOISE}))}
    score = silhouette(X, ids, "cosine", model.config.seed) if len(ids) else None
    out["silhouette"] = None if score is None else round(score, 4)
    out["silhouette_space"] = "embeddings, cosine"
    meta = model.meta.get("clustering") or {}
    out["training_silhouette"] = meta.get("training_silhouette")
    if meta:
        out["training_silhouette_space"] = f"{meta.get('space')}, {meta.get('metric')}"
    out["sizes"] = {names[cid]: counts.get(cid, 0) for cid in c.cluster_ids_.tolist()}
    out["training_sizes"] = {names[cid]: int((c.labels_ == cid).sum()) for cid in c.cluster_ids_.tolist()}
    labelled = [i for i, t in enumerate(topics) if t is not None]
    if labelled:
        gold = [topics[i] for i in labelled]
        out.update(clustering_report(gold, ids[labelled]))
        out["n"], out["labelled"] = len(ids), len(labelled)
        if any(t is not None for t in c.cluster_topics_):
            topic_of = dict(zip(c.cluster_ids_.tolist(), c.cluster_topics_))
            named = [topic_of[int(ids[i])] for i in labelled]  # None for clusters that match no topic
            out["named_accuracy"] = float(np.mean([n == g for n, g in zip(named, gold)]))
    return out
