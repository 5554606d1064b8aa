"""`subq bench` on stories260K with tiny settings: the JSON's fields and cells, skipped cells (context
limit, memory), the PNG, and bad flags. Timings are never checked, only that they were measured."""
import json
import struct

from conftest import run_subq

TINY = ["--threads", "1", "--gen", "4", "--batch-context", "32"]


def png_size(path):
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_bench_json_and_png(subq_bin, data_dir, tmp_path):
    d = data_dir / "stories260K"
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    p = run_subq(subq_bin, "bench", "--model", d / "hf", "--model", d / "stories260K.bin", *TINY,
                 "--prompt-lengths", "16,64,1024", "--batch", "1,3", "--json", out, "--png", png)
    assert "prefill tok/s" in p.stdout and "aggregate tok/s" in p.stdout
    assert "bench:" in p.stderr and "warm-up" in p.stderr  # progress on stderr
    j = json.loads(out.read_text())
    assert j["machine"]["cores"] >= 1 and j["machine"]["cpu"] and len(j["machine"]["load_average"]) == 3
    assert j["options"]["prompt_lengths"] == [16, 64, 1024] and j["options"]["batches"] == [1, 3]
    assert [m["model"] for m in j["models"]] == [str(d / "hf"), str(d / "stories260K.bin")]
    for m in j["models"]:
        assert m["family"] == "llama" and m["context_limit"] == 512
        assert m["weight_bytes"] > 200_000 and m["peak_rss_bytes"] > 1_000_000 and m["workspace_bytes"] > 0
        short, mid, long = m["prefill"]
        for c in (short, mid):
            assert c["prefill_tok_s"] > 0 and c["ttft_s"] > 0 and c["decode_tok_s"] > 0
            assert 0 < c["state_bytes"] <= c["state_capacity_bytes"]
        assert mid["state_bytes"] > short["state_bytes"]  # a KV cache grows with the context
        assert "beyond context limit" in long["skipped"] and "prefill_tok_s" not in long
        for c, B in zip(m["batch"], (1, 3)):
            assert c["batch"] == B and c["tok_s_per_seq"] > 0
            assert abs(c["aggregate_tok_s"] - B * c["tok_s_per_seq"]) < 1e-6 * c["aggregate_tok_s"]
            assert 0 < c["state_bytes_per_seq"] <= c["state_capacity_bytes_per_seq"]
    assert png_size(png) == (1600, 500)  # two panels side by side
    import matplotlib.image
    assert matplotlib.image.imread(png).shape[:2] == (500, 1600)  # a PNG that decodes (drawn by plot.py)


def test_bench_skips_what_does_not_fit(subq_bin, data_dir, tmp_path):
    out = tmp_path / "b.json"
    run_subq(subq_bin, "bench", "--model", data_dir / "stories260K" / "hf", "--threads", "1", "--gen", "16",
             "--prompt-lengths", "500", "--batch", "1,64", "--batch-context", "256", "--memory-limit-mb", "2",
             "--json", out)
    m = json.loads(out.read_text())["models"][0]
    pre = m["prefill"][0]
    assert pre["prefill_tok_s"] > 0 and "beyond context limit" in pre["decode_skipped"]  # 500 + 16 > 512
    assert m["batch"][0]["aggregate_tok_s"] > 0
    assert "out of memory" in m["batch"][1]["skipped"]


def test_bench_bad_flags(subq_bin, data_dir):
    model = ["bench", "--model", data_dir / "stories260K" / "hf"]
    for flags, msg in ((["--prompt-lengths", "16,x"], "--prompt-lengths"), (["--batch", "0"], "--batch"),
                       (["--batch", ""], "--batch"), (["--device", "tpu"], "--device tpu")):
        p = run_subq(subq_bin, *model, *flags, check=False)
        assert p.returncode != 0 and msg in p.stderr, (flags, p.stderr)
    p = run_subq(subq_bin, "bench", "--model", "/nonexistent/model", check=False)
    assert p.returncode == 1 and "/nonexistent/model" in p.stderr


def test_bench_on_cuda_or_says_no_device(subq_bin, data_dir, tmp_path):
    """bench --device cuda: every cell measured on the GPU (named in the JSON) where one is present;
    elsewhere a clear error and exit code 1."""
    out = tmp_path / "b.json"
    p = run_subq(subq_bin, "bench", "--model", data_dir / "stories260K" / "hf", *TINY, "--prompt-lengths", "16,64",
                 "--batch", "1,4", "--device", "cuda", "--json", out, check=False)
    if p.returncode != 0:
        assert p.returncode == 1 and "no CUDA device" in p.stderr, p.stderr
        return
    j = json.loads(out.read_text())
    assert j["device"] != "cpu"
    m = j["models"][0]
    for c in m["prefill"]:
        assert c["prefill_tok_s"] > 0 and c["decode_tok_s"] > 0 and 0 < c["state_bytes"] <= c["state_capacity_bytes"]
    assert m["prefill"][1]["state_bytes"] > m["prefill"][0]["state_bytes"]  # the KV cache fills
    for c, B in zip(m["batch"], (1, 4)):
        assert c["batch"] == B and c["aggregate_tok_s"] > 0
