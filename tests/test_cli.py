"""The `obs-rvm` command end to end, as a user runs it: real processes, real files, real exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from processes import ctrl_c_as_in_a_terminal

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.matting import MattingSession, SessionOptions

from paths import ASTRONAUT, CLIPS, MODEL, REPO
from reference import clip_frames

CLIP = CLIPS / "again.mkv"


def obs_rvm(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "obs_rvm.cli", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_clean_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Non-zero exit, one line saying what is wrong, no traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("obs-rvm: error: "), result.stderr
    assert re.search(pattern, lines[-1]), lines[-1]


def decoded_frames(path: Path) -> int:
    """How many frames a video really has (the container's count is an estimate)."""
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    return count


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()] if folder.exists() else []


def test_process_to_png_sequence_matches_session(tmp_path):
    out = tmp_path / "out" / "%04d.png"
    result = obs_rvm("process", str(CLIP), "-o", str(out), "-b", "color", "--color", "10,20,30", "-q")
    assert "frames in" in result.stdout and "onnxruntime" in result.stdout
    written = sorted((tmp_path / "out").iterdir())
    count = int(cv2.VideoCapture(str(CLIP)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert abs(len(written) - count) <= 1 and written[0].name == "0000.png"
    session = MattingSession(SessionOptions(background=BackgroundConfig("color", color=(10, 20, 30))))
    for i, frame in enumerate(clip_frames("again.mkv", 6)):
        expected = session.process(frame, i / 30)
        got = cv2.cvtColor(cv2.imread(str(written[i]), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
        np.testing.assert_array_equal(got, expected)


def test_process_video_keeps_audio_and_every_frame(tmp_path):
    with_audio = tmp_path / "talk.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(CLIP), "-f", "lavfi", "-i", "sine=frequency=440",
                    "-shortest", "-c:v", "copy", "-c:a", "aac", str(with_audio)], check=True)
    out = tmp_path / "keyed.mp4"
    obs_rvm("process", str(with_audio), "-o", str(out), "-b", "blur", "-q")
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json",
                                       str(out)], capture_output=True, text=True, check=True).stdout)
    kinds = {s["codec_type"]: s for s in probe["streams"]}
    assert "audio" in kinds, "the input's audio must be kept"
    assert int(kinds["video"]["nb_read_frames"]) == decoded_frames(CLIP)
    assert (int(kinds["video"]["width"]), int(kinds["video"]["height"])) == (640, 480)
    assert sorted(leftovers(tmp_path)) == ["keyed.mp4", "talk.mkv"], "no temp file left behind"


@pytest.mark.parametrize(("suffix", "background"), [(".mp4", "blur"), (".mkv", "transparent")])
def test_audio_ending_early_costs_no_frame(tmp_path, suffix, background):
    """The output is as long as the video even when the audio track ends a second before it."""
    short_audio = tmp_path / "early.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(CLIP), "-f", "lavfi", "-i", "sine=frequency=440:d=1",
                    "-c:v", "copy", "-c:a", "aac", str(short_audio)], check=True)
    out = tmp_path / f"keyed{suffix}"
    obs_rvm("process", str(short_audio), "-o", str(out), "-b", background, "-q")
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json",
                                       str(out)], capture_output=True, text=True, check=True).stdout)
    kinds = {s["codec_type"]: s for s in probe["streams"]}
    assert "audio" in kinds, "the input's audio must be kept"
    assert int(kinds["video"]["nb_read_frames"]) == decoded_frames(CLIP)


def test_transparent_png_keeps_alpha(tmp_path):
    out = tmp_path / "astro.png"
    obs_rvm("process", str(ASTRONAUT), "-o", str(out), "-b", "transparent", "-q")
    rgba = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (512, 512, 4)
    assert rgba[:30, :30, 3].max() == 0 and rgba[80:140, 200:250, 3].min() > 200


def test_transparent_webm_has_alpha(tmp_path):
    out = tmp_path / "keyed.webm"
    obs_rvm("process", str(CLIP), "-o", str(out), "-b", "transparent", "-q")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(out)], capture_output=True, text=True)
    assert "alpha_mode=1" in probe.stdout or "TAG:ALPHA_MODE=1" in probe.stdout


def test_image_background_and_video_background(tmp_path):
    bg = tmp_path / "bg.jpg"
    cv2.imwrite(str(bg), np.full((100, 300, 3), (0, 0, 255), np.uint8))  # red, a different aspect ratio
    out = tmp_path / "img.png"
    obs_rvm("process", str(ASTRONAUT), "-o", str(out), "-b", "image", "--image", str(bg), "-q")
    corner = cv2.imread(str(out))[:20, -20:].reshape(-1, 3).mean(0)
    assert corner[2] > 200 and corner[:2].max() < 40, corner
    out = tmp_path / "vid.png"
    obs_rvm("process", str(ASTRONAUT), "-o", str(out), "-b", "video", "--video", str(CLIP), "-q")
    assert cv2.imread(str(out)).shape == (512, 512, 3)


def test_demo_writes_a_contact_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    result = obs_rvm("demo", "-o", str(out))
    assert str(out) in result.stdout
    sheet = cv2.imread(str(out))
    assert sheet.shape == (768, 1152, 3), "six 384-px tiles: input and five modes"
    green = sheet[40:60, 384 * 2 + 330:384 * 3 - 10].reshape(-1, 3).mean(0)  # colour tile, top-right corner
    assert abs(green[1] - 177) < 5 and green[0] < 80, green


def test_bench_prints_the_ratio_and_memory():
    result = obs_rvm("bench", "--sizes", "96x64", "--frames", "4", "--rss-frames", "12")
    assert "pipeline/bare" in result.stdout and "peak RSS 96x64" in result.stdout


def test_bench_times_obs_rvm_process_against_the_bare_model_on_the_same_frames():
    result = obs_rvm("bench", "--sizes", "96x64", "--frames", "2", "--rss-frames", "0", "--clip", str(CLIP),
                     "--process-frames", "9", "--preset", "superfast")
    line = next(line for line in result.stdout.splitlines() if "obs-rvm process" in line)
    assert line.startswith("96x64, 9 frames: obs-rvm process") and "bare model" in line, line
    assert "x264 superfast" in line, "the process run encodes with the preset asked for"
    assert float(re.search(r"process/bare (\d+\.\d+)", line).group(1)) > 0
    # The ceiling is the process's CPU time spread over the cores, against the bare model's time a frame.
    bare_fps = float(re.search(r"bare model ([\d.]+) fps", line).group(1))
    cpu = re.search(r"process ([\d.]+) ms, pipeline alone ([\d.]+) ms, bare model ([\d.]+) ms", line)
    process_ms, pipeline_ms, bare_ms = (float(v) for v in cpu.groups())
    cores = int(re.search(r"on (\d+) cores?", line).group(1))
    assert process_ms > 0 and pipeline_ms > 0 and bare_ms > 0 and cores >= 1
    ceiling = float(re.search(r"can reach (\d+\.\d+) at most", line).group(1))
    assert ceiling == pytest.approx(cores * 1000 / bare_fps / process_ms, rel=0.1, abs=0.02)


def test_cpu_time_counts_the_encoder_process():
    """ffmpeg's encoder runs as a child process: its CPU time is part of what `obs-rvm process` spends."""
    from obs_rvm.bench import cpu_seconds

    before = cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                    "while time.process_time() < end: pass"], check=True)
    assert cpu_seconds() - before >= 0.25


def test_the_encoder_takes_one_thread_where_the_model_takes_the_cores(tmp_path):
    """On the CPU, more encoder threads only pre-empt inference (docs/performance.md): one thread, every frame."""
    from obs_rvm.process import encoder_threads
    from obs_rvm.video_io import open_sink

    session = MattingSession(SessionOptions(backend="cpu"))
    assert not session.on_gpu and encoder_threads(session) == 1
    out = tmp_path / "one-thread.mp4"
    sink = open_sink(str(out), 30.0, (64, 48), False, None, threads=encoder_threads(session))
    assert sink.proc.args[sink.proc.args.index("-threads") + 1] == "1"
    for i in range(7):
        sink.write(np.full((48, 64, 4), 30 * i, np.uint8))
    sink.commit()
    assert decoded_frames(out) == 7


COLOURS = np.array([[220, 30, 40], [30, 200, 60], [40, 50, 210], [128, 128, 128]], np.uint8)  # RGB


@pytest.mark.parametrize("name,size", [("even.mp4", (96, 64)), ("odd.mp4", (97, 63)), ("even.webm", (96, 64))])
def test_colours_survive_the_encoder_at_even_and_odd_sizes(tmp_path, name, size):
    """Frames reach ffmpeg as I420 where the output is 4:2:0 and even-sized, as RGBA otherwise: either way the file
    decodes to the colours written (a channel swap or a misread pixel format shows as a wrong colour)."""
    from obs_rvm.video_io import open_sink

    w, h = size
    frame = np.full((h, w, 4), 255, np.uint8)
    for i, colour in enumerate(COLOURS):  # four vertical bands
        frame[:, i * w // 4:(i + 1) * w // 4, :3] = colour
    out = tmp_path / name
    sink = open_sink(str(out), 30.0, size, False, None)
    for _ in range(5):
        sink.write(frame)
    sink.commit()
    cap = cv2.VideoCapture(str(out))
    decoded = []
    while (read := cap.read())[0]:
        decoded.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    assert len(decoded) == 5
    for i, colour in enumerate(COLOURS):
        centre = decoded[-1][h // 2, i * w // 4 + w // 8].astype(int)
        assert np.abs(centre - colour).max() <= 8, (name, i, centre.tolist(), colour.tolist())


def x264_options(path: Path) -> dict[str, str]:
    """The settings libx264 wrote into the file's own bitstream (its SEI line "x264 - core ... options: ...")."""
    line = re.search(rb"x264 - core .*? options: ([^\x00]+)", path.read_bytes()).group(1).decode()
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def test_preset_reaches_the_encoder_and_trades_size_for_cpu(tmp_path):
    """--preset is what libx264 ran with: veryfast by default (CABAC on), ultrafast without CABAC and bigger."""
    default, fast = tmp_path / "default.mp4", tmp_path / "ultrafast.mp4"
    obs_rvm("process", str(CLIP), "-o", str(default), "-b", "blur", "--max-frames", "20", "-q", "--no-audio")
    obs_rvm("process", str(CLIP), "-o", str(fast), "-b", "blur", "--max-frames", "20", "-q", "--no-audio",
            "--preset", "ultrafast")
    assert x264_options(default)["cabac"] == "1" and x264_options(default)["subme"] == "2"  # veryfast
    assert x264_options(fast)["cabac"] == "0" and x264_options(fast)["subme"] == "0"  # ultrafast
    assert decoded_frames(fast) == decoded_frames(default) == 20
    assert fast.stat().st_size > default.stat().st_size
    bad = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--preset", "quick", check=False)
    assert bad.returncode == 2 and "invalid choice: 'quick'" in bad.stderr and not (tmp_path / "x.mp4").exists()


def test_preset_for_an_output_it_does_not_apply_to_says_so(tmp_path):
    webm = tmp_path / "keyed.webm"
    told = obs_rvm("process", str(CLIP), "-o", str(webm), "--max-frames", "5", "-q", "--preset", "ultrafast")
    assert "warning: --preset applies to H.264 video" in told.stderr and "with libvpx-vp9" in told.stderr, told.stderr
    assert decoded_frames(webm) == 5
    quiet = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "plain.webm"), "--max-frames", "5", "-q")
    assert "--preset" not in quiet.stderr, "no warning about an option the user did not give"


# --- bad input: one clear line, exit code 1, nothing half-written -----------------------------------------------


def test_missing_model_file(tmp_path):
    out = tmp_path / "o.mp4"
    r = obs_rvm("process", str(CLIP), "-o", str(out), env={"OBS_RVM_MODEL": str(tmp_path / "nope.onnx")},
                check=False)
    assert_clean_error(r, "model file not found")
    assert leftovers(tmp_path) == []


def test_corrupt_model(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(MODEL.read_bytes()[:50_000])
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "--model", str(broken), check=False)
    assert_clean_error(r, "corrupt or truncated")
    assert leftovers(tmp_path) == ["broken.onnx"]


def test_checksum_mismatch_of_downloaded_model(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "rvm_mobilenetv3_fp32.onnx").write_bytes(MODEL.read_bytes())  # not the official bytes
    env = {"OBS_RVM_MODEL": "", "OBS_RVM_MODEL_DIR": str(models)}
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "--model", "mobilenetv3", env=env, check=False)
    assert_clean_error(r, "does not match the published sha256")


def test_not_an_rvm_model(tmp_path):
    from onnx import TensorProto, helper, save

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g), str(tmp_path / "relu.onnx"))
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "--model", str(tmp_path / "relu.onnx"),
                check=False)
    assert_clean_error(r, "not a Robust Video Matting model")


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_unreadable_or_empty_video(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    r = obs_rvm("process", str(bad), "-o", str(tmp_path / "o.mp4"), check=False)
    assert_clean_error(r, "empty|cannot open video|no readable frames")
    assert leftovers(tmp_path) == ["bad.mp4"]


def test_missing_background_files(tmp_path):
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "-b", "image", "--image",
                str(tmp_path / "none.png"), check=False)
    assert_clean_error(r, "image not found")
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "-b", "video", "--video",
                str(tmp_path / "none.mp4"), check=False)
    assert_clean_error(r, "video not found")
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "-b", "image", check=False)
    assert_clean_error(r, "needs --image")
    assert leftovers(tmp_path) == []


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    r = obs_rvm("process", str(CLIP), "-o", str(blocker / "o.mp4"), check=False)
    assert_clean_error(r, "cannot create output folder")
    r = obs_rvm("process", str(CLIP), "-o", "/proc/obs-rvm-test.png", check=False)  # unwritable even for root
    assert_clean_error(r, "cannot write to output folder /proc")


def test_transparent_into_mp4_is_refused(tmp_path):
    r = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "o.mp4"), "-b", "transparent", check=False)
    assert_clean_error(r, "cannot store transparency.*webm")
    assert leftovers(tmp_path) == []


def test_interrupted_run_leaves_no_output(tmp_path):
    long_clip = CLIPS / "one-by-one-person-detection.mp4"
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "obs_rvm.cli", "process", str(long_clip), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.time() + 120
    while time.time() < deadline and not any(".partial" in n for n in leftovers(tmp_path)):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(tmp_path) == [], "an interrupted run must not leave a partial file"


def test_help_lists_every_command():
    result = obs_rvm("--help")
    for command in ("process", "demo", "bench", "models"):
        assert command in result.stdout
    assert shutil.which("ffmpeg"), "ffmpeg is part of the test environment (.ci/run installs it)"


# --- offline, out of the box ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory) -> dict[str, str]:
    """What a fresh clone on a machine without internet sees: nothing downloaded, nothing cached, no installer
    record, no model override, and a release URL nothing answers on (conftest's closed port)."""
    root = tmp_path_factory.mktemp("offline")
    env = {k: v for k, v in os.environ.items() if k != "OBS_RVM_MODEL"}
    env.update(OBS_RVM_MODEL_DIR=str(root / "models"), OBS_RVM_CACHE_DIR=str(root / "cache"),
               XDG_CONFIG_HOME=str(root / "config"))
    return env


NOTE = "obs-rvm: using the bundled model: run `obs-rvm models download mobilenetv3` for the official fp32 weights"


def run_offline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "obs_rvm.cli", *args], capture_output=True, text=True, env=env,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines().count(NOTE) == 1, result.stderr
    print(f"\nobs-rvm {args[0]} offline: {time.monotonic() - start:.1f} s")
    return result


def test_offline_demo_process_and_camera_key_with_the_bundled_model(offline_env, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    demo = run_offline(offline_env, "demo", "-o", str(sheet_path))
    assert "model mobilenetv3-web" in demo.stdout
    sheet = cv2.imread(str(sheet_path))
    green = sheet[40:60, 384 * 2 + 330:384 * 3 - 10].reshape(-1, 3).mean(0)  # colour tile: background keyed out
    assert abs(green[1] - 177) < 5 and green[0] < 80, green
    restored = Path(offline_env["OBS_RVM_CACHE_DIR"]) / "models" / "rvm_mobilenetv3_tfjs_int8_dequant.onnx"
    assert restored.read_bytes() == MODEL.read_bytes()
    assert not any(Path(offline_env["OBS_RVM_MODEL_DIR"]).glob("*")), "nothing downloaded, nothing half-written"

    out = tmp_path / "process" / "%04d.png"
    process = run_offline(offline_env, "process", str(CLIP), "-o", str(out), "-b", "transparent", "--max-frames",
                          "4", "-q")
    assert "model mobilenetv3-web" in process.stdout
    reference = obs_rvm("process", str(CLIP), "-o", str(tmp_path / "ref" / "%04d.png"), "-b", "transparent",
                        "--max-frames", "4", "-q", "--model", str(MODEL))
    assert "frames in" in reference.stdout
    for got, want in zip(sorted(out.parent.iterdir()), sorted((tmp_path / "ref").iterdir()), strict=True):
        got_px, want_px = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(int) for p in (got, want))
        assert np.abs(got_px - want_px).max() <= 1, "the bundled model keys as the shared model file does"
        alpha = got_px[..., 3]
        assert (alpha > 250).mean() > 0.1 and (alpha < 5).mean() > 0.1, "a person keyed out of a background"

    camera_out = tmp_path / "camera" / "%05d.png"
    camera = run_offline(offline_env, "camera", "-i", str(CLIP), "-o", str(camera_out), "--duration", "1",
                         "-b", "color")
    frames = sorted(camera_out.parent.iterdir())
    assert len(frames) == 30, camera.stdout
    last = cv2.imread(str(frames[-1]))
    assert (np.abs(last.astype(int) - (64, 177, 0)).max(axis=2) < 8).mean() > 0.1, "green background keyed in"
