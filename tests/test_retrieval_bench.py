"""Issue 10's GPU benches at toy size on the CPU, the same scripts the GPU runs use:
bench/gpu/retrieval_teacher.sh trains the retrieval teacher (recipes/retrieval-teacher-gpu.yaml, a few steps)
and ranks its heads; bench/gpu/retrieval_students.sh distils students of it (ranked and random head hybrids,
Oryx, a stories260K student) with scaled budgets and scores them; both reports read what the runs wrote.
The CPU recipe recipes/retrieval-teacher.yaml runs shortened too."""
import json
import os
import pathlib
import subprocess
import tarfile

from conftest import run_subq

ROOT = pathlib.Path(__file__).resolve().parent.parent
GPU = ROOT / "bench" / "gpu"


def bash(env, *args, cwd=None):
    p = subprocess.run(["bash", *map(str, args)], env=env, capture_output=True, text=True, cwd=cwd)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_cpu_recipe_runs_shortened(subq_bin, data_dir, tmp_path):
    probes = tmp_path / "probes"
    probes.mkdir()
    for name, args in [("kv-retrieval-p2", ["kv-retrieval", "--pairs", "2", "--seed", "1011"]),
                       ("kv-retrieval-p4", ["kv-retrieval", "--pairs", "4", "--seed", "1012"]),
                       ("kv-retrieval-p6", ["kv-retrieval", "--pairs", "6", "--seed", "1001"]),
                       ("mqar-p6q6", ["mqar", "--pairs", "6", "--queries", "6", "--seed", "1003"])]:
        run_subq(subq_bin, "data", "probe", "--probe", args[0], *args[1:], "--n", "200", "--out",
                 probes / f"{name}.jsonl")
    env = dict(os.environ, SUBQ_DATA=str(data_dir), SUBQ_PROBES=str(probes))
    out = tmp_path / "rt"
    p = subprocess.run([str(subq_bin), "train", "--recipe", str(ROOT / "recipes" / "retrieval-teacher.yaml"),
                        "--out", str(out), "--threads", "2", "--set", "train.tokens=16384",
                        "--set", "data.eval_tokens=4096"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["window"] == 256 and summary["held_out_ppl"] < 512


def test_teacher_and_students_pipeline_tiny_on_cpu(subq_bin, data_dir, tmp_path):
    env = dict(os.environ, DEVICE="cpu", BUILD="0", SUBQ_BUILD=str(pathlib.Path(subq_bin).parent),
               SUBQ_DATA=str(data_dir), OMP_NUM_THREADS="1")
    # Teacher: stage, a 3-step calibration and a few seconds of training, probes, both head rankings.
    tdev, tout = tmp_path / "tdev", tmp_path / "tout"
    bash(env, GPU / "retrieval_teacher.sh", "stage", tdev)
    bash(dict(env, TRAIN_SECONDS="3", CALIB_STEPS="3", WORK=str(tmp_path / "twork")),
         tdev / "bench" / "gpu" / "retrieval_teacher.sh", "run", tdev, tout)
    assert sorted(p.name for p in tout.iterdir()) == ["d128l6h8.tgz", "gpu.txt"]  # few files: the device returns <= 8
    bash(env, GPU / "retrieval_teacher.sh", "report", tout)
    teachers = json.loads((tout / "teachers.json").read_text())["teachers"]
    assert [t["name"] for t in teachers] == ["d128l6h8"] and teachers[0]["n_heads_total"] == 48
    t = tout / "d128l6h8"
    heads, rand = json.loads((t / "heads.json").read_text()), json.loads((t / "heads-random.json").read_text())
    assert heads["method"] == "ablation" and rand["method"] == "random" and len(heads["heads"]) == 48
    # Students of that teacher: budgets set by FACTORS (no calibration), scored as each ends.
    sdev, sout = tmp_path / "sdev", tmp_path / "sout"
    bash(env, GPU / "retrieval_students.sh", "stage", t, t / "heads.json", t / "heads-random.json", sdev)
    only = "rt-dm2 rt-heads1 rt-random1 rt-oryx s260-dm2"
    bash(dict(env, ONLY=only, FACTORS="rt-=0.0005 s260-=0.0005", MICRO_BATCH="4", BATCH_TOKENS="1024",
              KEEP_WEIGHTS="rt-heads1", WORK=str(tmp_path / "swork")),
         sdev / "bench" / "gpu" / "retrieval_students.sh", "run", sdev, sout)
    assert sorted(p.name for p in sout.iterdir()) == ["rt-heads1-weights.tgz", "students.tgz"]
    with tarfile.open(sout / "rt-heads1-weights.tgz") as tar:
        cfg = json.loads(tar.extractfile("run/config.json").read())
    top = heads["heads"][0]
    assert cfg["attention_heads"] == {str(top["layer"]): [top["head"]]}  # the ranking's first head is kept
    p = bash(env, GPU / "retrieval_students.sh", "report", sout, "--teacher", t)
    res = json.loads((sout / "retrieval-students.json").read_text())
    assert sorted(res["students"]) == sorted(only.split())
    for name, r in res["students"].items():
        assert r["exported"] and r["state_bytes"] > 0 and r["ppl_ratio"] > 0, name
        assert (r["kv6"] is not None) == name.startswith("rt-"), name
    # The hybrid's kept head adds its KV cache to the pure student's constant state.
    assert res["students"]["rt-heads1"]["state_bytes"] > res["students"]["rt-dm2"]["state_bytes"]
    sched = res["students"]["rt-oryx"]["oryx_schedules"]
    assert sorted(sched, key=int) == ["0", "4", "100000"] and sched["100000"]["attention_fraction"] == 1.0
    assert len(res["goals"]) == 5 and "| goal | measured | met |" in p.stdout
