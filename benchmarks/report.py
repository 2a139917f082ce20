"""Markdown tables from the benchmarks' JSON files (``--json-out``), for the README.

    python benchmarks/report.py build/bench                    # print every table
    python benchmarks/report.py build/bench --readme README.md # rewrite the marked sections

Reads ``clahe.json``, ``clahe_ops.json``, ``pipeline.json``, ``models.json`` and ``serving.json``
from the folder (those present). With ``--readme`` each table replaces the text between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in the README (NAME = clahe, clahe_ops,
pipeline, models, serving); other text is left alone, and a marker pair without a JSON file is kept as is.
The numbers are the JSON's, with its machine, load and command, so a README table is always
regenerated, never typed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

NAMES = ("clahe", "clahe_ops", "pipeline", "models", "serving", "train")


def _caption(data: dict, path: Path) -> str:
    when = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    if data.get("utc"):  # the bench's own clock (a copied file's modification time is the copy's)
        when = datetime.datetime.fromisoformat(data["utc"])
    parts = [data.get("device") or data.get("machine", "")]  # a bench's own device line says more
    load = data.get("load_average")
    if load:
        parts.append(f"load average {load[0]:.1f} -> {load[-1]:.1f}")
    parts.append(when.strftime("%Y-%m-%d %H:%M UTC"))
    command = data.get("command")
    text = "; ".join(p for p in parts if p)
    return f"_{text}" + (f"; `{command}`_" if command else "_")


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def render_clahe(data: dict) -> list[str]:
    lines = [
        "| size | call | TF eager | tf.function | jit_compile | OpenCV | eager / OpenCV | tf.function / OpenCV | jit / OpenCV | exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        ms, ratio = r["ms_per_image"], r["ratio_to_opencv"]
        call = "1 image" if r["batch"] == 1 else f"batch {r['batch']}"
        lines.append(
            f"| {r['size']} | {call} | {ms['eager']:.2f} | {ms['tf.function']:.2f} | {ms['jit_compile']:.2f} "
            f"| {ms['opencv']:.2f} | {ratio['eager']:.2f} | {ratio['tf.function']:.2f} "
            f"| {ratio['jit_compile']:.2f} | {'yes' if r['exact'] else 'NO'} |"
        )
    lines.append("")
    lines.append(
        "ms per image, median of interleaved rounds; ratios are medians of per-round ratios. Goals: "
        + "; ".join(
            f"{g['variant']} <= {g['goal']}x OpenCV: worst {g['worst_ratio']:.2f}x, {_verdict(g['met'])}"
            for g in data.get("goals", [])
        )
        + "."
    )
    return lines


def render_clahe_ops(data: dict) -> list[str]:
    lines = [
        "| size | batch | CLAHE on device | OpenCV on host CPU | OpenCV / device | with host copies | exact | rotation on device | rotation vs host CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rotation = {(r["size"], r["batch"]): r for r in data.get("rotation", [])}
    for r in data["clahe"]:
        rot = rotation.get((r["size"], r["batch"]), {})
        diff = rot.get("max_abs_diff_vs_host_cpu")
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['device_ms']:.3f} | {r['opencv_ms']:.3f} | "
            f"{r['speedup_device']:.1f}x | {r['speedup_round_trip']:.2f}x | {'yes' if r['exact'] else 'NO'} | "
            f"{rot.get('device_ms', float('nan')):.3f} | {'-' if diff is None else f'{diff:.1e}'} |"
        )
    lines.append("")
    lines.append(
        f"ms per image, median of rounds; {data['backend']} on {data['device']}; OpenCV {data['opencv']} "
        f"on the host; clip {data['clip_limit']}, grid {data['tile_grid'][0]}x{data['tile_grid'][1]}, "
        f"{data.get('images', 'images')}. \"with host copies\": OpenCV's time over the device's "
        "including the copy of the batch to the device and back. \"exact\": every output equals "
        "OpenCV's. Rotation: `RandomAffine(30)`, bilinear; largest difference (of 1) from the same maps "
        "computed on the host CPU."
    )
    model = data.get("model")
    if model:
        ips = model["images_per_s"]
        lines.append("")
        lines.append(
            f"Training SEME-ResNet50 at {model['size']} px, batch {model['batch']}, {model['precision']}: "
            f"{ips['seme_resnet50']:.1f} img/s alone, {ips['clahe+rotation+seme_resnet50']:.1f} img/s with "
            f"`AdaptiveEqualization(fraction=0.4)` and `RandomAffine(30)` in front (ratio {model['ratio']:.3f})."
        )
    return lines


def render_pipeline(data: dict) -> list[str]:
    sizes = [str(s) for s in data["sizes"]]
    with_cores = any("cores_for_550_at_512" in r for r in data["rows"])
    head = "| pipeline | " + " | ".join(f"S={s} img/s" for s in sizes)
    head += " | " + " | ".join(f"S={s} img/s per core" for s in sizes)
    head += " | cores for 550 img/s at 512 |" if with_cores else " |"
    lines = [head, "|---" * (1 + 2 * len(sizes) + int(with_cores)) + "|"]
    for r in data["rows"]:
        line = f"| {r['pipeline']} | " + " | ".join(f"{r['images_per_s'][s]:.1f}" for s in sizes)
        line += " | " + " | ".join(f"{r['images_per_s_per_core'][s]:.1f}" for s in sizes)
        line += f" | {r['cores_for_550_at_512']:.0f} |" if with_cores else " |"
        lines.append(line)
    lines.append("")
    lines.append(
        "All-TF vs cv2 pipeline (goal >= 1"
        + ("; median of per-round ratios" if any("ratio_of_best_rates" in g for g in data.get("goals", [])) else "")
        + "): "
        + "; ".join(
            f"S={g['size']} {g['pipeline'].lstrip('+ ')} {g['ratio_to_cv2']:.3f}x, {_verdict(g['met'])}"
            for g in data.get("goals", [])
        )
        + f". Images: {data['images']}, batch {data['batch']}, img/s the best of {data['rounds']} interleaved epochs."
    )
    return lines


def render_models(data: dict) -> list[str]:
    lines = ["| model | precision | img/s | ms/step |", "|---|---|---|---|"]
    for key, rate in data["images_per_s"].items():
        name, _, precision = key.partition("@")
        lines.append(f"| {name} | {precision or 'float32'} | {rate:.1f} | {data['step_ms'][key]:.1f} |")
    lines.append("")
    lines.append(
        f"Training step on random data, {data['size']}x{data['size']}x{data['channels']}, batch "
        f"{data['batch']}, best of {data['rounds']} rounds of {data['steps']} steps, "
        f"{data['backend']}{'' if data.get('jit_compile', True) else ', no XLA'}. Step-time ratios: "
        + "; ".join(f"{k} {v:.3f}" for k, v in data["step_time_ratios"].items())
        + "."
    )
    return lines


def render_serving(data: dict) -> list[str]:
    lines = [
        "| batch | requests | images/s | p50 latency (ms) | p95 latency (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['batch']} | {r['requests']} | {r['images_per_s']:.2f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
        )
    lines.append("")
    lines.append(f"Cascade SavedModel on {data['input']}; stage 1 {data['stage1']}, stage 2 {data['stage2']}.")
    return lines


def render_train(data: dict) -> list[str]:
    f32 = data["matmul_gflops"].get("float32")
    lines = ["| engine | precision | layout | img/s | per process | GFLOP/s | of float32 matmul |",
             "|---|---|---|---:|---|---:|---:|"]
    gflop = 12.3 * (data["size"] / 224) ** 2
    for r in data["runs"]:
        rate = r.get("img_per_s")
        if not rate:
            lines.append(f"| {r['engine']} | {r['precision']} | {r['layout']} | failed: {r.get('error')} | | | |")
            continue
        per = ", ".join(f"{x:.2f}" for x in r.get("per_process") or [])
        share = f"{rate * gflop / f32:.0%}" if isinstance(f32, float) else ""
        lines.append(f"| {r['engine']} | {r['precision']} | {r['layout']} | {rate:.2f} | {per} | "
                     f"{rate * gflop:.0f} | {share} |")
    mm = ", ".join(f"{k} {v:.0f}" for k, v in data["matmul_gflops"].items() if isinstance(v, float))
    lines += ["", f"{data['network']} at {data['size']} px, batch {data['batch']}, {data['steps']} timed "
              f"steps after warm-up, random data; {data['cores']} cores; TensorFlow matmul 4096^2 in the "
              f"same run: {mm} GFLOP/s; {gflop:.1f} GFLOP per image and step (ResNet50's training step). "
              f"Load average {data['load_before'][0]:.2f} before, {data['load_after'][0]:.2f} after."]
    return lines


RENDER = {"clahe": render_clahe, "clahe_ops": render_clahe_ops, "pipeline": render_pipeline,
          "models": render_models, "serving": render_serving, "train": render_train}


def tables(folder: Path) -> dict[str, str]:
    out = {}
    for name in NAMES:
        path = folder / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            out[name] = "\n".join(RENDER[name](data) + ["", _caption(data, path)])
    return out


def rewrite(readme: Path, rendered: dict[str, str]) -> list[str]:
    """Replaces the marked sections of `readme`; returns the names replaced."""
    text = readme.read_text()
    done = []
    for name, table in rendered.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        text, count = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(2), text)
        if count:
            done.append(name)
    readme.write_text(text)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of the benches' JSON files")
    parser.add_argument("--readme", type=Path, help="rewrite the <!-- bench:NAME --> sections of this file")
    args = parser.parse_args(argv)
    rendered = tables(args.folder)
    if not rendered:
        print(f"report: no bench JSON ({', '.join(n + '.json' for n in NAMES)}) in {args.folder}", file=sys.stderr)
        return 1
    for name, table in rendered.items():
        print(f"### {name}\n\n{table}\n")
    if args.readme:
        done = rewrite(args.readme, rendered)
        print(f"report: rewrote {', '.join(done) or 'no'} section(s) of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
