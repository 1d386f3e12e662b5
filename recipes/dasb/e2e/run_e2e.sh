#!/bin/bash
# End-to-end check: DASB's own LJSpeech extraction, Tokotron training + evaluation decoding,
# and check_tokens.py, with BiCodec configured only by recipes/dasb's yaml.
#
#   DASB=/path/to/benchmarks/DASB SOURCE=/path/to/tiny_release WORK=/tmp/dasb_e2e \
#       bash recipes/dasb/e2e/run_e2e.sh
#
# Needs: DASB's code (flexthink/benchmarks, branch DASB-tts), kaldiio, tgt and unidecode
# importable (pip install, or pip install --target $WORK/pydeps), and the [demo] extra for
# the synthetic corpus. Tokotron runs at test size on CPU: 1 epoch of 5 steps per layout,
# evaluation on the valid and test utterances with an offline stand-in for UTMOS/Whisper.
set -u
PLUGIN=$(cd "$(dirname "$0")/../../.." && pwd)
: "${DASB:?set DASB to benchmarks/DASB of a DASB checkout}"
SOURCE=${SOURCE:-$PLUGIN/../shared/reference/tiny_release}
WORK=${WORK:-/tmp/dasb_e2e}
R=$WORK/results
E2E=$PLUGIN/recipes/dasb/e2e
COMPAT=$(python -c "import torchaudio; print('' if hasattr(torchaudio, 'info') else '$E2E/compat')")
export PYTHONPATH=$PLUGIN:$WORK/pydeps:$E2E:$COMPAT${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p $R $WORK/hparams

# An LJSpeech-shaped corpus (20 utterances at 22.05 kHz) synthesised offline.
[ -f $WORK/LJSpeech/metadata.csv ] || {
  python $PLUGIN/recipes/demo_corpus.py $WORK/demo --num 20 &&
  python $E2E/make_ljspeech.py $WORK/demo $WORK/LJSpeech; } || exit 1
# The yaml under test, copied in as a user would; DASB appends the eval.yaml found beside
# the training yaml, here the offline one.
cp $PLUGIN/recipes/dasb/LJSpeech/extraction/hparams/bicodec.yaml $DASB/LJSpeech/extraction/hparams/
cp $PLUGIN/recipes/dasb/LJSpeech/TTS/tokotron/hparams/train_bicodec.yaml $E2E/hparams/eval.yaml $WORK/hparams/
# C = 4096 and H = 32 for the tiny test release; a tiny Tokotron.
TINY="--audio_num_tokens 4096 --audio_emb_size 32 --d_model 64 --nhead 2 --enc_num_layers 1
  --dec_num_layers 1 --d_ffn 128 --batch_size 4 --number_of_epochs 1 --lr_warmup_steps 10
  --num_workers 0 --infer_max_audio_length 50 --ckpt_key loss --device cpu"

step() { echo "== $1 (t=${SECONDS} s)"; }
extract() {  # name, overrides...
  local name=$1; shift; step "DASB extract.py, $name"
  (cd $DASB/LJSpeech/extraction && python extract.py hparams/bicodec.yaml \
     --data_folder $WORK/LJSpeech --bicodec_source $SOURCE --output_folder $R/extract_$name \
     --vocab_size 4096 --save_embedding True --num_workers 0 --device cpu "$@" \
     > $R/extract_$name.log 2>&1); echo "rc=$?"
}
check() {  # store, options...
  local store=$1; shift; step "check_tokens.py, $store"
  python $PLUGIN/recipes/dasb/check_tokens.py --dasb $DASB \
     --tokens $R/extract_$store/save/ljspeech --data_folder $WORK/LJSpeech \
     --json $R/extract_$store/{train,valid,test}.json --source $SOURCE "$@" > $R/check_$store.log 2>&1
  echo "rc=$?"; tail -1 $R/check_$store.log
  grep -c '"semantic_equal": true, "global_equal": true, "decode_equal": true' $R/check_$store.log
}
tokotron() {  # name, store, overrides...
  local name=$1 store=$2; shift 2; step "DASB Tokotron train.py, $name"
  (cd $DASB/LJSpeech/TTS/tokotron && python train.py $WORK/hparams/train_bicodec.yaml \
     --run_name $name --data_folder $WORK/LJSpeech --cached_data_folder $R/extract_$store \
     --skip_prep True --tokens_folder $R/extract_$store/save/ljspeech --bicodec_source $SOURCE \
     --output_folder $R/tokotron_$name $TINY "$@" > $R/tokotron_$name.log 2>&1); echo "rc=$?"
  grep -o "BiCodec DASB vocabulary.*" $R/tokotron_$name.log | sort -u
  grep -o "epoch: 1, .* train loss: [0-9.]*" $R/tokotron_$name.log | grep -o "train loss: .*"
  for f in $(find $R/tokotron_$name/eval -name stats.csv | sort); do echo "$f: $(tail -n +2 $f)"; done
}

extract g32                                   # K = 33, one utterance per batch
check g32
tokotron k33 g32                              # speaker from the tokens
tokotron k1 g32 --audio_tokens_per_step 1 --bicodec_speaker $WORK/LJSpeech/wavs/LJ900-0000.wav
extract g4b8 --bicodec_global_codebooks 4 --batch_size 8   # K = 5, batches of 8 cropped by DASB
check g4b8 --global_codebooks 4
tokotron k5 g4b8 --bicodec_global_codebooks 4 --audio_tokens_per_step 5
step done
