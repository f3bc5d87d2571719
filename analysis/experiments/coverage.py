"""Which architectures ``netgraph.from_torch`` traces: every torchvision classifier and a timm selection.

Each model is built architecture-only (``netgraph.zoo.build``, seed 0, no weights
downloaded) at its default input size (``netgraph.zoo.input_shape``) and traced, each in a
fresh process forked from a server that has imported torch once (so one model's memory is
freed before the next, and a crash or a timeout costs one row). A row records:

* ``status``: ``traced``; ``unsupported`` (``from_torch`` raised the project's
  :class:`~netgraph.errors.UnsupportedModelError`: the expected refusal); ``bug`` (any
  other exception from ``from_torch``, or from the flows of a traced graph); ``build
  failed``; ``crashed`` (the process died, e.g. out of memory); ``timeout``;
* ``build_s``, ``trace_s`` (``from_torch`` alone, one thread), ``peak_mb`` (the process's
  peak resident memory during the trace, model included, from Linux's ``VmHWM`` reset
  before the trace) and ``trace_extra_mb`` (that peak minus the resident memory just
  before the trace); ``param_mb`` (float32 parameter bytes);
* ``prunable_weights``: conv and linear weights of the model (``Conv1d/2d/3d``, ``Linear``
  and their subclasses, plus ``MultiheadAttention``'s packed ``in_proj_weight``), and
  ``graph_weights``: the weights the unit graph holds (``NetGraph.num_weights``);
* ``log10_R``: log10 of SynFlow's R on the dense graph;
* ``blockers``: the items of the ``UnsupportedModelError`` message, or the exception.

:func:`write_coverage` writes ``coverage.md`` (summary per source, top blockers, one table
per source), ``coverage.csv`` and ``coverage.json``.

Examples
--------
>>> from analysis.experiments import coverage
>>> row = coverage.probe("resnet20")
>>> row["status"], row["graph_weights"] == row["prunable_weights"]
('traced', True)
>>> coverage.blocker_key("cannot build the unit graph: module 'layer1.0.conv2' of type Conv2d "
...                      "is not supported (groups=32). Supported: Linear, ...")
'module of type Conv2d is not supported (groups=N)'
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

from .coverage_report import blocker_key, split_blockers, summarize, to_markdown

__all__ = ["SOURCES", "TIMM_SELECTION", "check_sources", "model_specs", "probe", "run_coverage", "write_coverage",
           "summarize",
           "to_markdown", "blocker_key", "split_blockers"]

SOURCES = ("torchvision", "timm")

# The timm selection: the smallest variant of each architecture family, (family, name).
TIMM_SELECTION = (
    ("ResNet", "resnet18"), ("ResNet-D", "resnet18d"), ("ResNeXt", "resnext26ts"),
    ("SE-ResNet", "seresnet18"), ("ECA-ResNet", "ecaresnet26t"), ("Res2Net", "res2net50_14w_8s"),
    ("EfficientNet", "efficientnet_b0"), ("EfficientNet V2", "tf_efficientnetv2_b0"),
    ("MobileNet V2", "mobilenetv2_050"), ("MobileNet V3", "mobilenetv3_small_050"),
    ("MobileNet V4", "mobilenetv4_conv_small"), ("MnasNet", "mnasnet_small"), ("LCNet", "lcnet_050"),
    ("GhostNet", "ghostnet_050"), ("RexNet", "rexnet_100"), ("RegNetX", "regnetx_002"),
    ("RegNetY", "regnety_002"), ("ConvNeXt", "convnext_atto"), ("ConvNeXt V2", "convnextv2_atto"),
    ("DenseNet", "densenet121"), ("DLA", "dla46_c"), ("DPN", "dpn48b"), ("Inception", "inception_v3"),
    ("Xception", "xception41p"), ("CSPNet", "cspresnet50"), ("CSPDarkNet (CS3)", "cs3darknet_s"),
    ("HRNet", "hrnet_w18_small"), ("RepVGG", "repvgg_a0"), ("MobileOne", "mobileone_s0"),
    ("NFNet", "nfnet_l0"), ("SelecSLS", "selecsls42b"), ("HGNetV2", "hgnetv2_b0"), ("VGG", "vgg11"),
    ("ViT", "vit_tiny_patch16_224"), ("DeiT", "deit_tiny_patch16_224"), ("CaiT", "cait_xxs24_224"),
    ("Swin", "swin_tiny_patch4_window7_224"), ("Swin V2", "swinv2_tiny_window8_256"),
    ("MLP-Mixer", "mixer_s32_224"), ("ResMLP", "resmlp_12_224"), ("gMLP", "gmlp_ti16_224"),
    ("PiT", "pit_ti_224"), ("LeViT", "levit_128s"), ("CoaT", "coat_lite_tiny"),
    ("MobileViT", "mobilevit_xxs"), ("EdgeNeXt", "edgenext_xx_small"), ("PoolFormer", "poolformer_s12"),
    ("PoolFormer V2", "poolformerv2_s12"), ("EfficientFormer", "efficientformer_l1"),
    ("ConvMixer", "convmixer_768_32"), ("FastViT", "fastvit_t8"), ("TinyViT", "tiny_vit_5m_224"),
)
FAMILY = {name: family for family, name in TIMM_SELECTION}
COLUMNS = ("source", "name", "family", "input_shape", "status", "build_s", "trace_s", "peak_mb",
           "trace_extra_mb", "param_mb", "prunable_weights", "graph_weights", "log10_R", "blockers")


def model_specs(sources=SOURCES) -> list:
    """``source:name`` specs to try: every torchvision classifier, the timm selection.

    Examples
    --------
    >>> specs = model_specs(("torchvision",))
    >>> len(specs) >= 80 and "torchvision:resnet50" in specs
    True
    """
    from netgraph import zoo

    out = []
    for source in sources:
        if source == "torchvision":
            out += [f"torchvision:{n}" for n in zoo.names("torchvision")]
        elif source == "timm":
            out += [f"timm:{n}" for _, n in TIMM_SELECTION]
        else:
            out += [n for n in zoo.names()] if source == "zoo" else [source]
    return out


def check_sources(sources) -> tuple:
    """``sources`` if each is a source (torchvision, timm, zoo), a zoo model or an existing
    ``torchvision:NAME`` / ``timm:NAME``; else :class:`~netgraph.errors.InvalidInputError` naming it.

    >>> check_sources(("zoo", "timm:resnet18"))
    ('zoo', 'timm:resnet18')
    >>> check_sources(("foo",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: 'foo' is neither a source (torchvision, timm, zoo) nor a model (...)
    """
    from netgraph import sources as model_sources, zoo
    from netgraph.errors import InvalidInputError

    sources = tuple(sources)
    for s in sources:
        if s in (*SOURCES, "zoo") or s in zoo.names():
            continue
        if model_sources.split(s)[0] is None:
            raise InvalidInputError(f"{s!r} is neither a source ({', '.join((*SOURCES, 'zoo'))}) nor a model (a zoo "
                                    "name such as resnet20, torchvision:NAME, timm:NAME)")
        zoo.input_shape(s)  # an unknown torchvision/timm name: one line with close matches
    specs = model_specs(sources)
    twice = list(dict.fromkeys(x for i, x in enumerate(specs) if x in specs[:i]))
    if twice:
        raise InvalidInputError(f"{', '.join(twice[:5])}{' ...' if len(twice) > 5 else ''} listed twice (directly or "
                                "through a source); list each source and model once")
    return sources


def prunable_weights(model) -> int:
    """Conv and linear weights of a torch model (and ``MultiheadAttention``'s packed input projection)."""
    import torch.nn as nn

    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and isinstance(m.weight, nn.Parameter):
            n += m.weight.numel()
        elif isinstance(m, nn.MultiheadAttention):
            for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                w = getattr(m, name, None)
                n += w.numel() if w is not None else 0
    return n


def _memory_kb(field, reset_peak=False):
    """A ``/proc/self/status`` field in kB (None off Linux); ``reset_peak`` first resets ``VmHWM``."""
    try:
        if reset_peak:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # Linux >= 4.0
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def _first_line(exc) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _row(spec: str, **values) -> dict:
    from netgraph.sources import split

    source, name = split(spec)
    source = source or ("user" if ":" in spec else "zoo")
    family = FAMILY.get(name, "") if source == "timm" else ""
    return {c: None for c in COLUMNS} | {"source": source, "name": name, "family": family} | values


def probe(spec: str, input_shape=None, threads: int = 1) -> dict:
    """Build one model and trace it in this process; never raises (failures become the row).

    Parameters
    ----------
    spec : str
        A model name for :func:`netgraph.zoo.build` (``torchvision:NAME``, ``timm:NAME``...).
    input_shape : sequence of int, optional
        Default: the model's own (:func:`netgraph.zoo.input_shape`).
    threads : int
        Torch threads while building and tracing (1: comparable timings).
    """
    import torch

    from netgraph import flows, from_torch, zoo
    from netgraph.errors import NetgraphError, UnsupportedModelError

    row = _row(spec)
    torch.set_num_threads(int(threads))
    try:
        shape = tuple(input_shape) if input_shape is not None else zoo.input_shape(spec)
        row["input_shape"] = "x".join(map(str, shape))
        t0 = time.perf_counter()
        model = zoo.build(spec, seed=0)
        row["build_s"] = round(time.perf_counter() - t0, 3)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be built is a row, not a crash
        return row | {"status": "build failed", "blockers": [_first_line(exc)]}
    row["prunable_weights"] = prunable_weights(model)
    row["param_mb"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1)
    rss0, g, failed = _memory_kb("VmRSS", reset_peak=True), None, None
    t0 = time.perf_counter()
    try:
        g = from_torch(model, shape, model_spec={"name": spec, "input_shape": list(shape), "seed": 0})
    except UnsupportedModelError as exc:
        failed = {"status": "unsupported", "blockers": split_blockers(str(exc))}
    except Exception as exc:  # noqa: BLE001 - anything else escaping from_torch is a bug to report
        kind = "" if isinstance(exc, NetgraphError) else " (not a netgraph error)"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        failed = {"status": "bug", "blockers": [
            f"{_first_line(exc)}{kind} at {os.path.basename(where.filename)}:{where.lineno}"]}
    row["trace_s"] = round(time.perf_counter() - t0, 3)
    peak = _memory_kb("VmHWM") if rss0 is not None else None
    if peak is not None and rss0 is not None:
        row["peak_mb"], row["trace_extra_mb"] = round(peak / 1024, 1), round((peak - rss0) / 1024, 1)
    if failed:
        return row | failed
    row["graph_weights"] = g.num_weights
    try:
        row["log10_R"] = round(float(flows.log10_synflow_R(g)), 4)
    except Exception as exc:  # noqa: BLE001
        return row | {"status": "bug", "blockers": [f"log10_synflow_R: {_first_line(exc)}"]}
    return row | {"status": "traced", "blockers": []}


def _serve(timeout: float) -> None:
    """Probe server: imports torch once, forks a child per stdin request, answers one JSON line each."""
    import select
    import signal

    import torch  # noqa: F401 - imported once, before forking

    import netgraph.trace  # noqa: F401
    for pkg in SOURCES:
        try:
            __import__(pkg)
        except Exception:  # noqa: BLE001,S110 - the probe reports a missing package
            pass
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints must not mix with answers
    for line in sys.stdin:
        req = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: probe, answer, exit without running the server's cleanup
            os.close(r)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the requests are the server's
            try:
                data = json.dumps(probe(req["spec"], req.get("input_shape"), req["threads"]))
            except BaseException as exc:  # noqa: BLE001
                data = json.dumps({"error": _first_line(exc)})
            with os.fdopen(w, "w") as f:
                f.write(data)
            os._exit(0)
        os.close(w)
        chunks, deadline, timed_out = [], time.monotonic() + timeout, False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        try:
            row = json.loads(b"".join(chunks)) if chunks and not timed_out else None
        except ValueError:
            row = None
        out.write(json.dumps({"row": row, "exit": status, "timeout": timed_out}) + "\n")
        out.flush()


def _server(timeout: float):
    path = [os.path.abspath(p or os.getcwd()) for p in sys.path]  # this process's imports, in order
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if os.path.isdir(p)))
    log = tempfile.TemporaryFile("w+")
    cmd = [sys.executable, "-c", f"from {__name__} import _serve; _serve({float(timeout)!r})"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                            env=env)
    return proc, log


def run_coverage(specs, *, isolate: bool = True, timeout: float = 600, threads: int = 1,
                 quiet: bool = False) -> list:
    """Probe every spec (see :func:`probe`), each in a fresh forked process unless ``isolate=False``.

    Parameters
    ----------
    specs : iterable of str or (str, input_shape)
        Model names for :func:`netgraph.zoo.build`, optionally with an input shape.
    isolate : bool
        Fork one process per model from a probe server (default); ``False`` probes here.
    timeout : float
        Seconds allowed per model (isolated runs).
    threads : int
        Torch threads per model.
    quiet : bool
        No progress bar.

    Returns
    -------
    list of dict
        One row per spec, in order.
    """
    from tqdm.auto import tqdm

    rows = []
    server, log = _server(timeout) if isolate else (None, None)
    try:
        bar = tqdm(list(specs), desc="coverage", unit="model", disable=quiet)
        for item in bar:
            spec, shape = (item, None) if isinstance(item, str) else item
            bar.set_postfix_str(spec)
            if not isolate:
                rows.append(probe(spec, shape, threads=threads))
                continue
            request = {"spec": spec, "input_shape": None if shape is None else list(shape), "threads": threads}
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            answer = server.stdout.readline()
            if not answer:
                log.seek(0)
                raise RuntimeError(f"the probe server died: {log.read()[-2000:]}")
            answer = json.loads(answer)
            row = answer["row"]
            if answer["timeout"]:
                row = _row(spec, status="timeout", blockers=[f"no result in {timeout:g} s"])
            elif row is None or "error" in row:
                code = os.waitstatus_to_exitcode(answer["exit"])
                why = row["error"] if row else f"the process died (exit code {code}; -9: killed, e.g. out of memory)"
                row = _row(spec, status="crashed", blockers=[why])
            rows.append(row)
    finally:
        if server is not None:
            server.stdin.close()
            server.wait()
            log.close()
    return rows


def write_coverage(out_dir, sources=SOURCES, *, quiet: bool = False, isolate: bool = True,
                   timeout: float = 600, threads: int = 1, command: str | None = None) -> dict:
    """Probe every model of ``sources`` and write ``coverage.md``, ``coverage.csv``, ``coverage.json``.

    Parameters
    ----------
    out_dir : path
        Directory for the three files (created if needed).
    sources : sequence of {"torchvision", "timm"}
        Model sources to try (``"zoo"`` adds the zoo; another string is one model spec).
    quiet : bool
        No progress bar.
    isolate : bool
        One fresh process per model (default); ``False`` traces in this process.
    timeout : float
        Seconds allowed per model.
    threads : int
        Torch threads per model.
    command : str, optional
        The command line to print in the report.

    Returns
    -------
    dict
        ``rows``, ``summary`` and ``files`` (the paths written).
    """
    import torch

    import netgraph

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    rows = run_coverage(model_specs(sources), isolate=isolate, timeout=timeout, threads=threads, quiet=quiet)
    summary = summarize(rows)
    versions = [f"netgraph {netgraph.__version__}", f"torch {torch.__version__}"]
    for pkg in ("torchvision", "timm"):
        try:
            versions.append(f"{pkg} {__import__(pkg).__version__}")
        except ImportError:
            pass
    header = (f"Generated by `{command or 'analysis.experiments.coverage.write_coverage'}` on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({', '.join(versions)}; "
              f"{time.perf_counter() - t0:.0f} s). Architectures only (no weights downloaded), seed 0, "
              f"each model's default input size, {threads} torch thread(s), one process per model. "
              "*unsupported*: `from_torch` raised `UnsupportedModelError` (its blockers are listed); "
              "*bug*: any other exception. *trace s* is `from_torch` alone (it runs the model once); "
              "*peak MB* is the process's peak resident memory during the trace, model included. "
              "*graph / prunable weights*: weights in the unit graph / conv and linear weights of "
              "the model. *log10 R*: SynFlow's R of the dense graph (timm initialises the last "
              "BatchNorm of each residual block to zero, so its ResNets have a far smaller R).")
    files = {k: os.path.join(out_dir, f"coverage.{k}") for k in ("md", "csv", "json")}
    with open(files["md"], "w") as f:
        f.write(to_markdown(rows, summary, header))
    with open(files["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "blockers": json.dumps(r["blockers"] or [])})
    with open(files["json"], "w") as f:
        json.dump({"header": header, "summary": summary, "rows": rows}, f, indent=1)
    return {"rows": rows, "summary": summary, "files": files}
