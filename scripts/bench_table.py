"""The tables scripts/benchmark.py prints (and README records)."""

import tensorflow as tf


def fmt(s, unit="ms", scale=1e3):
  return (f"{s['median'] * scale:.2f} [{s['min'] * scale:.2f}, "
          f"{s['max'] * scale:.2f}] {unit}")


def targets(r):
  m, t1, t2, t3, t4, t5 = (r[k] for k in ("machine", "target_1", "target_2",
                                          "target_3", "target_4", "target_5"))
  lines = [
      f"Machine: {m['cores']} cores ({m['cpu']}), read {m['read_GBps']:.1f} "
      f"GB/s, float32 matmul {m['matmul_GFLOPps']:.0f} GFLOP/s; "
      f"{r['date']}; TF {tf.__version__}",
      "", "| measure | result |", "| --- | --- |"]
  for name, s in t1["per_epoch"].items():
    lines.append(f"| 1. ms per tutorial epoch (step + test eval): {name} | "
                 f"{fmt(s)} |")
  lines += [
      f"| 1. floor from bandwidth and matmul rate | {t1['floor_ms']:.2f} ms |",
      "| 1. the step's two products alone, TF kernels | " + ", ".join(
          f"{k}: {v:.2f} ms" for k, v in t1["products_ms"].items()) + " |",
      f"| 1. logreg_tf / plain TF2 (target <= 0.5) | "
      f"{t1['ours_over_plain']:.2f} |",
      f"| 1. logreg_tf / floor (target <= 2) | {t1['ours_over_floor']:.2f} |",
      f"| 1. weights after 500 epochs vs plain TF2 (max rel. diff) | "
      f"{t1['weights_max_rel_diff_vs_plain']:.1e}; accuracy "
      f"{t1['ours_500']['test_accuracy']:.4f} vs "
      f"{t1['plain_500_accuracy']:.4f} |"]
  for name, s in t2["seconds"].items():
    lines.append(f"| 2. seconds to 92% test accuracy: {name} | "
                 f"{fmt(s, 's', 1)} |")
  for name, s in t3.items():
    if name != "extra_s":
      lines.append(f"| 3. process wall time: {name} | {fmt(s, 's', 1)} |")
  lines += [
      f"| 3. start-up beyond importing TensorFlow (target <= 1 s) | "
      f"{t3['extra_s']:.2f} s |",
      f"| 4. peak RSS, tutorial run: logreg_tf (target <= 1.0 GB) | "
      f"{t4['logreg_tf_peak_GB']:.2f} GB |",
      f"| 4. peak RSS, tutorial run: plain TF2 | "
      f"{t4['plain_tf2_peak_GB']:.2f} GB |"]
  for n, s in t5["per_epoch_s"].items():
    lines.append(f"| 5. ms per full-batch epoch, {n} examples | {fmt(s)} |")
  lines += [
      f"| 5. linear fit | {t5['ms_per_10k_examples']:.2f} ms per 10k examples"
      f" + {t5['intercept_ms']:.2f} ms; largest deviation "
      f"{100 * t5['max_rel_dev_from_line']:.0f}% |",
      f"| 5. traces of the epoch (+ eval) function per run (target 1) | "
      f"{t5['max_traces_per_run']} |"]
  return "\n".join(lines)


def _rows(title, stats_by_name, unit="ms", scale=1e3):
  return [f"| {title}: {name} | {fmt(s, unit, scale)} |"
          for name, s in stats_by_name.items()]


def itemized(r, epochs):
  lines = ["", "One displayed epoch of the tutorial protocol with a model "
           f"directory, part by part (median [min, max] over {epochs} "
           "epochs):", "",
           "| part | ms |", "| --- | --- |"]
  for name, s in r.items():
    if s["min"] != s["min"]:  # a difference: no spread
      lines.append(f"| {name} | {s['median'] * 1e3:.2f} ms |")
    else:
      lines.append(f"| {name} | {fmt(s)} |")
  return "\n".join(lines)


def whole_command(r):
  n = r["epochs"]
  lines = ["", f"Per full-batch step as whole commands, (T({n + 1} epochs) "
           f"- T(1)) / {n}, lr 0.5, --display_step equal to the epochs, "
           "median of the rounds:", "",
           "| command | ms per step | over plain TF2 |",
           "| --- | --- | --- |"]
  for name, ms in r["median_ms"].items():
    rounds = ", ".join(f"{v * 1e3:.2f}" for v in r["per_step_s"][name])
    lines.append(f"| {name} | {ms:.2f} ({rounds}) | "
                 f"{r['over_plain'][name]:.2f} |")
  return "\n".join(lines)


def table(results):
  m = results["machine"]
  parts = []
  if "target_1" not in results:
    parts.append(f"Machine: {m['cores']} cores ({m['cpu']}), read "
                 f"{m['read_GBps']:.1f} GB/s, float32 matmul "
                 f"{m['matmul_GFLOPps']:.0f} GFLOP/s; {results['date']}; "
                 f"TF {tf.__version__}")
  if "target_1" in results:
    parts.append(targets(results))
    parts.append("\n".join(_rows("checkpoint save (MNIST model)",
                                  results["checkpoint_save"])))
  if "itemized" in results:
    parts.append(itemized(results["itemized"], results["itemized_epochs"]))
  if "whole_command" in results:
    parts.append(whole_command(results["whole_command"]))
  if "predict" in results:
    r = results["predict"]
    parts.append(
        f"\npredict, whole commands on a directory of {r['images']:,} PNGs: "
        f"{r['images_per_second']:.0f} images per second ((T({r['images']:,})"
        f" - T(1)) / {r['images'] - 1:,}; T({r['images']:,}) "
        + ", ".join(f"{t:.2f}" for t in r["all_images_s"]) + " s, T(1) "
        + ", ".join(f"{t:.2f}" for t in r["one_image_s"]) + " s)")
  return "\n".join(parts)
