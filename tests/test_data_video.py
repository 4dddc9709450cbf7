import av
import numpy as np
import pytest
from PIL import Image

from mora.data.errors import DatasetFormatError
from mora.data.video import decode_video_frames, list_frame_files, probe_video, read_video


def _write_mp4(path, num_frames=40, size=(48, 64), fps=10, gop=12):
    """Frame i is a flat grey of value 5 * i (decodable back within codec error)."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    stream.options = {"crf": "10"}
    for i in range(num_frames):
        frame = np.full((*size, 3), 5 * i % 256, dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def _value(frames):
    return np.round(frames.reshape(len(frames), -1).mean(1) / 5).astype(int).tolist()


@pytest.fixture
def mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_mp4(path)
    return path


def test_mp4_probe_and_read_all(mp4):
    assert probe_video(mp4) == (40, 10.0, 48, 64)
    frames, indices, fps = read_video(mp4)
    assert frames.shape == (40, 48, 64, 3) and frames.dtype == np.uint8
    assert indices == list(range(40)) and fps == 10.0
    assert _value(frames) == list(range(40))


def test_mp4_num_frames_indices_fps(mp4):
    frames, indices, _ = read_video(mp4, num_frames=5)
    assert indices == np.linspace(0, 39, 5).astype(int).tolist()
    assert _value(frames) == indices
    frames, indices, _ = read_video(mp4, indices=[39, 3, 3, 30])  # any order, repeats, seeks
    assert _value(frames) == [39, 3, 3, 30]
    frames, indices, _ = read_video(mp4, fps=2.5)
    assert indices == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert _value(frames) == indices


def test_sparse_decode_matches_full_decode(mp4):
    wanted = [1, 37, 2, 20]
    np.testing.assert_array_equal(decode_video_frames(mp4, wanted), read_video(mp4)[0][wanted])


def test_frame_folder_numeric_order_and_fps(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in [0, 2, 9, 10, 100]:  # 7-digit names would sort the same; "10" < "9" as strings
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert [p.stem for p in list_frame_files(folder)] == [
        "frame_0",
        "frame_2",
        "frame_9",
        "frame_10",
        "frame_100",
    ]
    frames, indices, fps = read_video(folder, indices=[4, 3])
    assert frames[:, 0, 0, 0].tolist() == [100, 10] and fps is None
    with pytest.raises(ValueError, match="folder_fps"):
        read_video(folder, fps=2)
    _, indices, fps = read_video(folder, fps=2, folder_fps=4)
    assert indices == [0, 2, 4] and fps == 4


def test_bad_inputs(tmp_path, mp4):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(DatasetFormatError, match="broken.mp4"):
        read_video(broken)
    with pytest.raises(IndexError, match="outside"):
        read_video(mp4, indices=[40])
    with pytest.raises(ValueError, match="at most one"):
        read_video(mp4, num_frames=2, indices=[0])


def test_seeking_across_long_gaps(tmp_path):
    path = tmp_path / "long.mp4"
    _write_mp4(path, num_frames=51 * 3, size=(16, 16), gop=10)  # values 5 * i wrap past 255: compare frames
    wanted = [150, 2, 100, 51]  # gaps > 48 frames: decoded with seeks
    np.testing.assert_array_equal(decode_video_frames(path, wanted), read_video(path)[0][wanted])
