"""Model registry, checkpoint discovery, loading, fingerprints and download."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from persam_studio.core import models
from persam_studio.core.models import registry
from persam_studio.core.models import sam_build
from persam_studio.core.segment.engine import Engine
from persam_studio.core.errors import Cancelled, CheckpointError, DownloadError, PersamError
from tests.conftest import SHARED


def _one_line_naming(err: Exception, path: Path) -> None:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    assert path.name in text


# --------------------------------------------------------------------------- registry


def test_registry_has_the_four_models_with_full_hashes():
    assert set(models.KNOWN_MODELS) == {"vit_t", "vit_b", "vit_l", "vit_h"}
    for name, info in models.KNOWN_MODELS.items():
        assert info.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.url.startswith("https://") and info.url.endswith("/" + info.filename)
        assert models.checkpoint_type(Path("/nowhere") / info.filename) == name
    ranks = sorted(models.KNOWN_MODELS, key=lambda n: models.KNOWN_MODELS[n].cpu_speed_rank)
    assert ranks == ["vit_t", "vit_b", "vit_l", "vit_h"]


# --------------------------------------------------------------------------- type inference


@pytest.mark.parametrize("model_type", ["tiny", "vit_b", "vit_l", "vit_h"])
def test_infer_type_from_shapes(model_type):
    # Meta tensors carry shapes without memory: a vit_h state dict costs nothing.
    sd = sam_build.build_sam(model_type, meta=True).state_dict()
    assert models.infer_model_type(sd) == model_type
    assert models.infer_model_type({"model": {"module." + k: v for k, v in sd.items()}}) == model_type


def _mobilesam_state_dict() -> dict:
    """MobileSAM's image-encoder keys and shapes (shared docs) plus SAM's decoder."""
    tsv = SHARED / "docs" / "mobilesam-image-encoder-keys.tsv"
    if not tsv.exists():
        pytest.skip(f"shared docs not available: {tsv}")
    sd = {k: v for k, v in sam_build.build_sam("tiny", meta=True).state_dict().items()
          if not k.startswith("image_encoder.")}
    for line in tsv.read_text().splitlines():
        key, shape = line.split("\t")
        sd[key] = torch.empty(eval(shape), device="meta")  # shapes like [32, 3, 3, 3]
    return sd


def test_infer_mobilesam_keys_as_vit_t():
    sd = _mobilesam_state_dict()
    assert models.infer_model_type(sd) == "vit_t"


def test_infer_rejects_non_sam_and_unknown_encoders():
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        models.infer_model_type({"fc.weight": torch.empty(3, 3, device="meta")})
    sd = sam_build.build_sam("tiny", meta=True).state_dict()
    sd["image_encoder.blocks.7.norm1.weight"] = torch.empty(32, device="meta")  # 3 blocks: no such spec
    with pytest.raises(CheckpointError, match="unknown SAM image encoder"):
        models.infer_model_type(sd)


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    """The tiny random SAM saved as the official checkpoints are: a plain state dict."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


def test_round_trip_gives_identical_logits(tiny_checkpoint, tiny_sam, rgb_image):
    loaded = models.load_model(tiny_checkpoint)
    assert loaded.model_type == "tiny" and loaded.path == tiny_checkpoint
    assert re.fullmatch(r"tiny-[0-9a-f]{16}", loaded.model_key)
    assert loaded.model_key == models.model_key("tiny", models.file_fingerprint(tiny_checkpoint))
    sam = loaded.sam
    assert not sam.training
    assert not any(t.is_meta for t in [*sam.parameters(), *sam.buffers()])
    assert not any(p.requires_grad for p in sam.parameters())
    assert torch.equal(sam.pixel_std, tiny_sam.pixel_std)

    ours, stock = Engine(sam, loaded.model_key), Engine(tiny_sam, "original")
    emb, emb0 = ours.encode(rgb_image), stock.encode(rgb_image)
    np.testing.assert_array_equal(emb.features, emb0.features)
    kwargs = dict(point_coords=np.array([[250.0, 140.0]]), point_labels=np.array([1]), multimask_output=True)
    got, want = ours.predict(emb, **kwargs), stock.predict(emb0, **kwargs)
    np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
    np.testing.assert_array_equal(got.iou_predictions, want.iou_predictions)


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module_prefix", "nested_training"])
def test_wrapped_state_dicts_load(tmp_path, tiny_sam, wrap):
    sd = tiny_sam.state_dict()
    obj = {
        "model": {"model": sd, "epoch": 3},
        "state_dict": {"state_dict": sd},
        "module_prefix": {"module." + k: v for k, v in sd.items()},
        "nested_training": {"model": {"module." + k: v for k, v in sd.items()}, "optimizer": {"lr": 0.1}},
    }[wrap]
    path = tmp_path / "wrapped.pth"
    torch.save(obj, path)
    loaded = models.load_model(path)
    assert loaded.model_type == "tiny"
    assert models.module_fingerprint(loaded.sam) == models.module_fingerprint(tiny_sam)


def test_legacy_non_zip_checkpoint_loads(tmp_path, tiny_sam):
    path = tmp_path / "legacy.pth"
    torch.save(tiny_sam.state_dict(), path, _use_new_zipfile_serialization=False)
    assert models.module_fingerprint(models.load_model(path).sam) == models.module_fingerprint(tiny_sam)


def test_half_precision_checkpoint_loads_as_float32(tmp_path, tiny_sam):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in tiny_sam.state_dict().items()}, path)
    sam = models.load_model(path).sam
    assert {p.dtype for p in sam.parameters()} == {torch.float32}


def _bad_file(kind: str, tmp_path: Path, tiny_checkpoint: Path) -> Path:
    path = tmp_path / f"{kind}.pth"
    data = tiny_checkpoint.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_sam":
        torch.save({"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated or corrupt"),
    ("random", "not a PyTorch checkpoint"),
    ("empty", "empty file"),
    ("not_sam", "not a SAM checkpoint (no image_encoder/mask_decoder weights)"),
    ("list", "not a SAM checkpoint"),
])
def test_bad_files_give_one_line_errors(tmp_path, tiny_checkpoint, kind, message):
    path = _bad_file(kind, tmp_path, tiny_checkpoint)
    with pytest.raises(CheckpointError) as info:
        models.load_model(path)
    assert message in str(info.value)
    _one_line_naming(info.value, path)


def test_missing_file_and_wrong_model_type(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not found") as info:
        models.load_model(tmp_path / "nope.pth")
    _one_line_naming(info.value, tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="checkpoint is tiny but --model vit_h was given") as info:
        models.load_model(tiny_checkpoint, "vit_h")
    _one_line_naming(info.value, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="unknown model type 'vit_x'"):
        models.load_model(tiny_checkpoint, "vit_x")
    assert models.load_model(tiny_checkpoint, "tiny").model_type == "tiny"


def test_missing_and_unexpected_keys_are_counted(tmp_path, tiny_sam):
    sd = dict(tiny_sam.state_dict())
    del sd["mask_decoder.iou_token.weight"]
    sd["mask_decoder.hf_token.weight"] = torch.zeros(1, 256)
    sd["mask_decoder.hf_mlp.weight"] = torch.zeros(1, 256)
    path = tmp_path / "hq_like.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        models.load_model(path)
    text = str(info.value)
    assert "1 missing key(s), e.g. mask_decoder.iou_token.weight" in text
    assert "2 unexpected key(s), e.g. mask_decoder.hf_mlp.weight" in text
    _one_line_naming(info.value, path)


def test_wrong_shape_is_reported(tmp_path, tiny_sam):
    sd = dict(tiny_sam.state_dict())
    sd["mask_decoder.iou_token.weight"] = torch.zeros(2, 256)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) of the wrong shape") as info:
        models.load_model(path)
    _one_line_naming(info.value, path)


def test_unavailable_device_is_one_line_error(tiny_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert models.default_device() == "cpu"
    with pytest.raises(PersamError, match="CUDA is not available") as info:
        models.load_model(tiny_checkpoint, device="cuda")
    assert "\n" not in str(info.value)
    with pytest.raises(PersamError, match="unknown device"):
        models.resolve_device("gpu0")


class _FakeTinyViT(torch.nn.Module):
    """Stands in for the TinyViT encoder: ``layers.*`` keys and a non-persistent
    buffer made by a factory function (so it lands on the meta device)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Conv2d(3, 256, 16, 16)])
        self.register_buffer("bias_idxs", torch.arange(4), persistent=False)

    def forward(self, x):
        return self.layers[0](x) + self.bias_idxs.sum()


def test_vit_t_loads_through_registered_encoder(tmp_path, monkeypatch):
    monkeypatch.setitem(sam_build._ENCODER_FACTORIES, "vit_t", _FakeTinyViT)
    torch.manual_seed(0)
    original = sam_build.build_sam("vit_t")
    path = tmp_path / "mobile_sam.pt"
    torch.save(original.state_dict(), path)
    loaded = models.load_model(path)
    assert loaded.model_type == "vit_t"
    assert torch.equal(loaded.sam.image_encoder.bias_idxs, torch.arange(4))  # filled, not meta
    assert models.module_fingerprint(loaded.sam) == models.module_fingerprint(original)


def test_model_type_without_encoder_is_clear(tmp_path, monkeypatch):
    monkeypatch.setitem(sam_build._ENCODER_FACTORIES, "vit_t", _FakeTinyViT)
    torch.manual_seed(0)
    path = tmp_path / "mobile_sam.pt"
    torch.save(sam_build.build_sam("vit_t").state_dict(), path)
    monkeypatch.delitem(sam_build._ENCODER_FACTORIES, "vit_t")
    with pytest.raises(CheckpointError, match="unknown model type 'vit_t'") as info:
        models.load_model(path)
    _one_line_naming(info.value, path)


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_follows_content_not_name_or_time(tmp_path, tiny_sam, tiny_checkpoint):
    copy = tmp_path / "copy.pth"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    os.utime(copy, ns=(1, 1))
    assert models.file_fingerprint(copy) == models.file_fingerprint(tiny_checkpoint)
    # One weight changed in the middle of the file, same size: a different fingerprint.
    sd = tiny_sam.state_dict()
    sd["mask_decoder.iou_token.weight"] = sd["mask_decoder.iou_token.weight"].clone()
    sd["mask_decoder.iou_token.weight"][0, 5] += 1.0
    changed = tmp_path / "changed" / tiny_checkpoint.name  # same name: same zip layout
    changed.parent.mkdir()
    torch.save(sd, changed)
    assert changed.stat().st_size == tiny_checkpoint.stat().st_size
    assert models.file_fingerprint(changed) != models.file_fingerprint(tiny_checkpoint)


def test_fingerprint_of_a_large_file_reads_little(tmp_path):
    big = tmp_path / "big.pth"
    with open(big, "wb") as fh:  # sparse 2.5 GB: hashing it all would take seconds
        fh.truncate(2_564_550_879)
    start = time.perf_counter()
    first = models.file_fingerprint(big)
    assert time.perf_counter() - start < 1.5
    with open(big, "r+b") as fh:
        fh.seek(2_564_550_879 - 10)
        fh.write(b"x")
    assert models.file_fingerprint(big) != first  # the last MiB is sampled; the memo sees the new mtime


def test_model_key_is_file_name_safe():
    assert models.model_key("vit_b", "ab" * 16) == "vit_b-" + "ab" * 8
    assert "/" not in models.model_key("a/b", "0" * 32)


# --------------------------------------------------------------------------- discovery


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    """Isolated search folders: source checkout, current dir, user data."""
    source = tmp_path / "repo" / "checkpoints"
    cwd = tmp_path / "cwd"
    for d in (source, cwd / "checkpoints", models.user_data_dir() / "checkpoints"):
        d.mkdir(parents=True)
    monkeypatch.setattr(registry, "source_checkpoints_dir", lambda: source)
    monkeypatch.chdir(cwd)
    return {"source": source, "cwd": cwd / "checkpoints", "user": models.user_data_dir() / "checkpoints",
            "tmp": tmp_path}


def test_no_checkpoint_gives_download_hint(folders):
    assert models.checkpoint_dirs() == [folders["source"], Path.cwd() / "checkpoints", folders["user"]]
    assert models.find_checkpoint() is None
    with pytest.raises(CheckpointError) as info:
        models.require_checkpoint(None, None)
    assert str(info.value) == ("no SAM checkpoint found; run 'persam-studio download vit_b' "
                               "or pass --checkpoint PATH")
    with pytest.raises(CheckpointError, match="download vit_h"):
        models.require_checkpoint(None, "vit_h")


def test_discovery_order(folders, monkeypatch):
    (folders["user"] / "sam_vit_b_01ec64.pth").write_bytes(b"u")
    assert models.find_checkpoint() == folders["user"] / "sam_vit_b_01ec64.pth"
    (folders["cwd"] / "sam_vit_l_0b3195.pth").write_bytes(b"c")
    assert models.find_checkpoint().parent.samefile(folders["cwd"])
    (folders["source"] / "sam_vit_h_4b8939.pth").write_bytes(b"s")
    assert models.find_checkpoint() == folders["source"] / "sam_vit_h_4b8939.pth"
    # Asking for a type skips folders without it.
    assert models.find_checkpoint(model_type="vit_b") == folders["user"] / "sam_vit_b_01ec64.pth"
    env_file = folders["tmp"] / "env.pth"
    env_file.write_bytes(b"e")
    monkeypatch.setenv("PERSAM_CHECKPOINT", str(env_file))
    assert models.find_checkpoint() == env_file
    explicit = folders["tmp"] / "explicit.pth"
    explicit.write_bytes(b"x")
    assert models.find_checkpoint(explicit) == explicit
    with pytest.raises(CheckpointError, match="not found") as info:
        models.find_checkpoint(folders["tmp"] / "missing.pth")
    _one_line_naming(info.value, folders["tmp"] / "missing.pth")
    monkeypatch.setenv("PERSAM_CHECKPOINT", str(folders["tmp"] / "gone.pth"))
    with pytest.raises(CheckpointError, match="not found .set in PERSAM_CHECKPOINT."):
        models.find_checkpoint()


def test_fastest_on_cpu_preferred_and_part_files_ignored(folders):
    d = folders["source"]
    for name in ("sam_vit_h_4b8939.pth", "sam_vit_b_01ec64.pth", "sam_vit_l_0b3195.pth", ".mobile_sam.pt.part"):
        (d / name).write_bytes(b"w")
    assert models.find_checkpoint() == d / "sam_vit_b_01ec64.pth"
    (d / "mobile_sam.pt").write_bytes(b"w")
    assert models.find_checkpoint() == d / "mobile_sam.pt"
    assert models.find_checkpoint(model_type="vit_h") == d / "sam_vit_h_4b8939.pth"
    assert models.find_checkpoint(explicit=d, model_type="vit_l") == d / "sam_vit_l_0b3195.pth"
    assert [p.name for p, _ in models.found_checkpoints()] == [
        "mobile_sam.pt", "sam_vit_b_01ec64.pth", "sam_vit_h_4b8939.pth", "sam_vit_l_0b3195.pth"]


def test_unknown_file_names_are_typed_by_content(folders, tiny_checkpoint):
    d = folders["user"]
    custom = d / "my_finetune.pth"
    custom.write_bytes(tiny_checkpoint.read_bytes())
    (d / "sam_vit_h_4b8939.pth").write_bytes(b"w")
    assert models.find_checkpoint(model_type="tiny") == custom
    assert models.find_checkpoint() == d / "sam_vit_h_4b8939.pth"  # known type beats an unofficial one
    assert (custom, "tiny") in models.found_checkpoints()
    assert models.find_checkpoint(model_type="vit_b") is None


# --------------------------------------------------------------------------- download

PAYLOAD = np.random.default_rng(1).integers(0, 256, (3 << 20) + 12345, dtype=np.uint8).tobytes()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload``; ``server.mode``: range, norange, drop_once, drop_always, 404."""

    def do_GET(self):  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append(rng)
        if srv.mode == "404":
            self.send_error(404)
            return
        data, start = srv.payload, 0
        if rng and srv.mode != "norange":
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "drop_always" or (srv.mode == "drop_once" and not srv.dropped):
            srv.dropped = True
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)
        srv.sent.append(len(body))

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.mode, srv.requests, srv.sent, srv.dropped = PAYLOAD, "range", [], [], False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.info = models.ModelInfo("test", "weights.pth", f"http://127.0.0.1:{srv.server_address[1]}/weights.pth",
                                hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD), "test weights", 9)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.pth"


def test_download_reports_progress_and_moves_into_place(server, tmp_path):
    calls = []
    path = models.download(server.info, tmp_path, progress=lambda d, t: calls.append((d, t)), timeout=5)
    assert path == tmp_path / "weights.pth" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / ".weights.pth.part").exists()
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 4
    # Already there and verified: nothing is fetched again.
    assert models.download(server.info, tmp_path, timeout=5) == path
    assert len(server.requests) == 1


def test_download_resumes_a_part_file_with_range(server, tmp_path):
    (tmp_path / ".weights.pth.part").write_bytes(PAYLOAD[: 1 << 20])
    path = models.download(server.info, tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={1 << 20}-"]
    assert server.sent == [len(PAYLOAD) - (1 << 20)]  # only the rest


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    server.mode = "norange"
    (tmp_path / ".weights.pth.part").write_bytes(PAYLOAD[: 1 << 20])
    path = models.download(server.info, tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert server.sent == [len(PAYLOAD)]


def test_dropped_connection_resumes_automatically(server, tmp_path):
    server.mode = "drop_once"
    path = models.download(server.info, tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0] is None and server.requests[1] == f"bytes={server.sent[0]}-"
    assert sum(server.sent) == len(PAYLOAD)  # nothing fetched twice


def test_interrupted_download_keeps_part_and_resumes_next_time(server, tmp_path):
    server.mode = "drop_always"
    with pytest.raises(DownloadError, match="interrupted.*run it again to resume") as info:
        models.download(server.info, tmp_path, timeout=5)
    assert "\n" not in str(info.value)
    part = tmp_path / ".weights.pth.part"
    have = part.stat().st_size
    assert 0 < have < len(PAYLOAD) and not (tmp_path / "weights.pth").exists()
    server.mode, server.sent = "range", []
    assert models.download(server.info, tmp_path, timeout=5).read_bytes() == PAYLOAD
    assert server.sent == [len(PAYLOAD) - have]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    bad = replace(server.info, sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"checksum mismatch \(expected SHA-256 000000000000\.\.\., got") as info:
        models.download(bad, tmp_path, timeout=5)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_md5_only_entries_are_verified_with_md5(server, tmp_path):
    # rembg publishes only MD5s for its subject models.
    good = replace(server.info, sha256=None, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert models.download(good, tmp_path, timeout=5).read_bytes() == PAYLOAD
    bad = replace(good, filename="other.pth", md5="f" * 32)
    with pytest.raises(DownloadError, match=r"checksum mismatch \(expected MD5 ffffffffffff\.\.\., got"):
        models.download(bad, tmp_path, timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pth"]


def test_unverified_download_when_no_hash_is_known(server, tmp_path):
    path = models.download(replace(server.info, sha256=None), tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD


def test_cancel_keeps_the_part_for_resuming(server, tmp_path):
    calls = []
    with pytest.raises(Cancelled):
        models.download(server.info, tmp_path, progress=lambda d, t: calls.append(d),
                        should_cancel=lambda: len(calls) > 1, timeout=5)
    assert (tmp_path / ".weights.pth.part").stat().st_size > 0
    assert not (tmp_path / "weights.pth").exists()


def test_offline_and_http_errors_are_one_line(server, tmp_path):
    offline = replace(server.info, url=closed_port_url())
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1") as info:
        models.download(offline, tmp_path, timeout=5)
    assert "\n" not in str(info.value)
    server.mode = "404"
    with pytest.raises(DownloadError, match="HTTP error 404"):
        models.download(server.info, tmp_path, timeout=5)
    with pytest.raises(DownloadError, match="unknown model 'vit_z'"):
        models.download("vit_z", tmp_path)
    assert not (tmp_path / "weights.pth").exists()


def test_default_download_dir(tmp_path, monkeypatch):
    source = tmp_path / "checkpoints"
    source.mkdir()
    monkeypatch.setattr(registry, "source_checkpoints_dir", lambda: source)
    assert models.default_download_dir() == source
    monkeypatch.setattr(registry, "source_checkpoints_dir", lambda: None)
    assert models.default_download_dir() == models.user_data_dir() / "checkpoints"
