#!/usr/bin/env bash
# The bench commands whose figures README.md and weights/README.md quote, with the arguments that
# bench/results/README.md gives for each (that file maps every figure to its command and JSON).
# This project's machine has 2 cores, so streams run one CPU thread each:
#   bash bench/run_all.sh a      # grey: denoising (first 12), DDNM on Set12 / BSD68, uncertainty, evaluate
#   bash bench/run_all.sh b      # colour denoising and DDNM, OOD, reliability, engine
#   bash bench/run_all.sh c      # Noise2Score fast path, noise-estimation grid, 2048² SR memory run
#   bash bench/run_all.sh h      # figures of earlier model versions (extracted from git history)
#   bash bench/run_all.sh p      # real noise, Poisson–Gaussian, large TIFFs, export, the loop API
#   bash bench/run_all.sh quiet  # two-thread runs (speed figures): run with nothing else on the machine
#   bash bench/run_all.sh        # a and b in parallel, then c and h, then p, then quiet
# Stream c needs the Noise2Score models its commands name (runs/n2s-*.safetensors: training commands in
# weights/README.md). Results: bench/results/*.json; each stream's log in runs/bench-logs/.
# README's tour table comes from `scoretool demo -o docs/demo` (docs/demo/results.json).
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
mkdir -p bench/results/logs runs/bench-logs runs/old
stream_a() {
  python bench/denoise.py --sets BSD68 --images 12 --methods scoretool --out denoise-bsd68-first12-grey
  python bench/restore.py --sets Set12 --tasks sr4,sr4_noisy,inpaint50,inpaint80,deblur --images 6 --name restore-set12-first6
  python bench/restore.py --sets Set12 --tasks sr4,inpaint50,inpaint80,deblur --images 6 --samplers pnp,ddnm --name restore-set12-first6-pnp-ddnm
  python bench/restore.py --sets Set12 --tasks sr4,inpaint80 --images 6 --steps 25 --samples 4 --name restore-set12-first6-samples4x25
  python bench/restore.py --sets BSD68 --tasks sr4 --images 12 --name restore-bsd68-sr4-first12
  python bench/uncertainty.py --images 01.png,02.png,05.png,08.png --strides 1,2 --smooth 1,2
  python bench/evaluate.py --sets Set12 --images 6 --out evaluate-set12-first6
}
stream_b() {
  python bench/denoise.py --sets CBSD68,skimage-colour --sigmas 15,25,50 --peer-images 12 --methods scoretool,BM3D,noisy --rgb-weights weights/prior-rgb.safetensors --out denoise-colour-generalisation
  python bench/denoise.py --sets CBSD68 --sigmas 25 --images 8 --methods scoretool --rgb-weights weights/prior-rgb-fast.safetensors --out denoise-cbsd68-sigma25-first8-rgb-fast
  # the stage-2 colour prior (32/64/128) that the colour DDNM and OOD figures below were measured with
  mkdir -p runs/old && git show db956fd:weights/prior-rgb.safetensors > runs/old/prior-rgb-stage2.safetensors
  python bench/denoise.py --sets CBSD68 --sigmas 25 --peer-images 8 --methods scoretool,BM3D --rgb-weights runs/old/prior-rgb-stage2.safetensors --out denoise-cbsd68-sigma25
  python bench/denoise.py --sets CBSD68 --sigmas 25 --images 8 --methods scoretool --rgb-weights runs/old/prior-rgb-stage2.safetensors --out denoise-cbsd68-sigma25-first8
  python bench/restore.py --sets CBSD68 --tasks sr4 --images 12 --name restore-cbsd68-sr4-first12
  python bench/restore.py --sets CBSD68 --tasks sr4 --images 6 --name restore-cbsd68-sr4-first6
  python bench/restore.py --sets CBSD68 --tasks sr4 --images 6 --samplers pnp --name restore-cbsd68-sr4-first6-pnp
  python bench/restore.py --sets CBSD68 --tasks sr4 --images 12 --steps 25 --samples 4 --name restore-cbsd68-sr4-first12-samples4x25
  python bench/ood.py --out ood-grey-colour
  python bench/reliability.py
  python bench/engine.py --images 5
}
stream_c() {
  python bench/noise2score.py --sets BSD68 --configs poisson:0.01 --methods n2s --n2s poisson=runs/n2s-poisson-fast.safetensors \
    --skip-grid --skip-montage --out noise2score-bsd68-poisson-fastpath
  python bench/noise2score.py --configs "" \
    --grid-models runs/n2s-gaussian15.safetensors,runs/n2s-gaussian50.safetensors,runs/n2s-poisson005.safetensors,runs/n2s-gamma50.safetensors \
    --skip-montage --out noise-estimation-grid-bsd68-first20 2>&1 | tee bench/results/logs/noise-estimation-grid-bsd68-first20.log
  python bench/restore.py --sets none --big 2048 --name restore-sr2-colour-2048
}
stream_h() {  # earlier versions of the bundled models, as the model cards' stage columns quote them
  git show c622fd8:weights/prior-gray.safetensors >runs/old/prior-gray-stage1.safetensors
  git show 7624040:weights/prior-gray.safetensors >runs/old/prior-gray-step4300.safetensors
  git show a32939c:weights/prior-gray.safetensors >runs/old/prior-gray-stage2.safetensors
  git show cf498ff:weights/prior-gray-fast.safetensors >runs/old/prior-gray-fast-stage1.safetensors
  git show 7624040:weights/prior-rgb.safetensors >runs/old/prior-rgb-stage1.safetensors
  python bench/denoise.py --sets BSD68,Set12 --peer-images 12 --methods scoretool,BM3D,noisy \
    --gray-weights runs/old/prior-gray-stage2.safetensors --out denoise-bsd68-set12-grey-stage2-bm3d
  python bench/noise2score.py --sets BSD68 --configs gaussian:25,poisson:0.01,gamma:100 --peer-images 12 --skip-grid --skip-montage \
    --prior runs/old/prior-gray-stage2.safetensors --out noise2score-bsd68-gaussian-poisson-gamma
  python bench/denoise.py --sets BSD68 --peer-images 12 --methods scoretool,BM3D,noisy \
    --gray-weights runs/old/prior-gray-stage1.safetensors --out denoise-bsd68-grey-stage1-bm3d
  python bench/denoise.py --sets BSD68,Set12 --peer-images 12 \
    --gray-weights runs/old/prior-gray-step4300.safetensors --out denoise-bsd68-set12-grey-step4300-peers
  python bench/denoise.py --sets BSD68 --methods scoretool \
    --gray-weights runs/old/prior-gray-fast-stage1.safetensors --out denoise-bsd68-grey-fast-stage1
  python bench/denoise.py --sets CBSD68 --sigmas 25 --peer-images 8 \
    --rgb-weights runs/old/prior-rgb-stage1.safetensors --out denoise-cbsd68-sigma25-rgb-stage1-peers
  python bench/restore.py --sets CBSD68 --tasks sr4 --images 4 --no-dihedral --name restore-cbsd68-sr4-first4
}
stream_p() {
  # realnoise-blind.json (first 8 images) predates the prior's σ check (git revision 5f35f0a); this command now gives the checked σ̂
  python bench/realnoise.py blind --images 8
  python bench/realnoise.py blind --sets BSD68 --images 20 --out realnoise-blind-first20-bsd68
  python bench/realnoise.py blind --sets CBSD68 --images 20 --out realnoise-blind-first20-cbsd68
  python bench/realnoise.py camera --images 8 --peer-images 0 --out realnoise-camera-polyu-first8
  python bench/realnoise.py camera --images 2 --peer-images 2 --out realnoise-camera-polyu-peers-first2
  python bench/realnoise.py camera --peer-images 0 --cbm3d-images 55 --out realnoise-camera-polyu-stage4
  python bench/realnoise.py camera --images 6 --peer-images 6 --out realnoise-camera-polyu-first6-peers
  python bench/realnoise.py camera-noise
  python bench/realnoise.py route --images 12 --sigmas 2,3,5,15,25,50
  python bench/realnoise.py montage
  python bench/realnoise.py pg
  python bench/loop_api.py
  python bench/export.py
  python bench/bigtiff.py --api --width 2000 --height 1500 --weights prior-gray-fast --name denoise-tiff-2000x1500-fast
  python bench/bigtiff.py --width 2600 --height 2400 --api --weights prior-gray-fast --name denoise-tiff-2600x2400-grey-fast-crop-check
  python bench/bigtiff.py --width 20000 --height 15000 --weights tinynet --name denoise-tiff-20000x15000-tinynet
  python bench/bigtiff.py --width 20000 --height 15000 --weights prior-gray-fast --name denoise-tiff-20000x15000-prior-gray-fast
}
stream_quiet() {  # two threads, nothing else running (the s/MP figures)
  export OMP_NUM_THREADS=2
  python bench/denoise.py --sets BSD68 --sigmas 25 --images 6 --peer-images 6 --methods scoretool,BM3D --out denoise-speed-bsd68-first6-grey
  python bench/denoise.py --sets BSD68 --sigmas 25 --images 6 --peer-images 6 --methods scoretool,BM3D --gray-weights prior-gray-fast \
    --out denoise-speed-bsd68-first6-grey-fast
  python bench/denoise.py --sets BSD68,Set12 --methods scoretool --record --out denoise-bsd68-set12-grey
  python bench/denoise.py --sets BSD68,Set12 --methods scoretool --gray-weights prior-gray-fast --record --out denoise-bsd68-set12-grey-fast
  python bench/denoise.py --sets BSD68 --images 12 --methods scoretool --gray-weights prior-gray-fast --out denoise-bsd68-first12-grey-fast
  python bench/pipelines.py
  python bench/startup.py --repeats 7
  # the revision before the start-up work, checked out beside this one for the comparison, then removed
  git worktree add --force runs/startup-before 5f35f0a >/dev/null 2>&1 || true
  python bench/startup.py --repeats 7 --pythonpath runs/startup-before --name startup-before
  git worktree remove --force runs/startup-before
}
run() { "stream_$1" >"runs/bench-logs/stream-$1.log" 2>&1; }
case "${1:-all}" in
  a|b|c|h|p|quiet) run "$1" ;;
  *) run a & run b & wait; run c & run h & wait; run p; run quiet ;;
esac
