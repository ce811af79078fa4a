"""Checks one writer's page-shaped stance file: python data/stance/pages/check.py data/stance/pages/FILE.jsonl"""
import json, re, sys
from collections import Counter

NEG = {"not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "without", "cannot", "deny", "denies",
       "denied", "denial", "false", "fake", "reject", "rejects", "rejected", "refute", "refuted", "hoax", "untrue",
       "dismiss", "dismissed", "dismisses", "baseless", "wrong", "lie", "lies", "debunk", "debunked"}
TOPICS = {"ukraine_war", "iran_protests", "uk_politics", "other"}
STANCES = {"agree", "disagree", "discuss", "unrelated"}
HARD = {"disagree_no_negation", "agree_paraphrase", "negation_in_unrelated", "negation_in_agree",
        "same_entities_other_event", "same_event_other_claim"}

def words(t):
    return set(re.findall(r"[a-z]+", t.lower().replace("n't", " not")))

path = sys.argv[1]
errors, stances, hard, n_heads = [], Counter(), Counter(), 0
neg_by = Counter(); events = set(); story_events = set()
seen_titles = set()
for i, line in enumerate(open(path, encoding="utf-8"), 1):
    if not line.strip():
        continue
    try:
        r = json.loads(line)
    except Exception as e:
        errors.append(f"line {i}: bad JSON {e}"); continue
    n_heads += 1
    for k in ("id", "event", "topic", "date", "headline", "stories"):
        if k not in r: errors.append(f"line {i}: missing {k}")
    if r.get("topic") not in TOPICS: errors.append(f"line {i}: topic {r.get('topic')}")
    if r.get("event") in events: errors.append(f"line {i}: headline event {r.get('event')} used twice")
    events.add(r.get("event"))
    st = r.get("stories", [])
    if not 8 <= len(st) <= 20: errors.append(f"line {i}: {len(st)} stories (want 8-20)")
    c = Counter(s.get("stance") for s in st)
    if c["unrelated"] < len(st) / 2: errors.append(f"line {i}: only {c['unrelated']} unrelated of {len(st)}")
    for j, s in enumerate(st):
        for k in ("title", "snippet", "stance", "topic", "event"):
            if not s.get(k): errors.append(f"line {i} story {j}: missing {k}")
        if s.get("stance") not in STANCES: errors.append(f"line {i} story {j}: stance {s.get('stance')}")
        if s.get("topic") not in TOPICS: errors.append(f"line {i} story {j}: topic {s.get('topic')}")
        if s.get("stance") != "unrelated" and s.get("event") != r.get("event"):
            errors.append(f"line {i} story {j}: a related story must carry the headline's event id")
        if s.get("stance") == "unrelated":
            if s.get("event") == r.get("event"): errors.append(f"line {i} story {j}: unrelated story with the headline's event")
            story_events.add(s.get("event"))
        if s.get("hard") and s["hard"] not in HARD: errors.append(f"line {i} story {j}: hard {s['hard']}")
        if s.get("title") in seen_titles: errors.append(f"line {i} story {j}: duplicate title")
        seen_titles.add(s.get("title"))
        stances[s.get("stance")] += 1
        hard[s.get("hard")] += 1
        if words(s.get("title", "") + " " + s.get("snippet", "")) & NEG: neg_by[s.get("stance")] += 1
clash = story_events & events
if clash: errors.append(f"unrelated stories use headline events of this file: {sorted(clash)[:10]}")
print(f"{n_heads} headlines, {sum(stances.values())} stories: {dict(stances)}")
print("share with a negation/denial word:", {k: round(neg_by[k] / max(stances[k], 1), 2) for k in STANCES})
print("hard cases:", {k: v for k, v in hard.items() if k})
print("\n".join(errors[:40]) or "OK")
