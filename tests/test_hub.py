"""Loading by hub id, from the hub cache, and offline, against a fake hub served by the test.

The fake hub is a local HTTP server that answers ``huggingface_hub``'s file
endpoint (``HEAD``/``GET /<org>/<name>/resolve/<revision>/<path>``) from
local folders; ``huggingface_hub`` is pointed at it as ``HF_ENDPOINT`` would,
with an empty cache per test. Every request is logged, so a test can say
which files were downloaded and that an offline load sent none.
"""

import hashlib
import http.server
import os
import re
import threading
import urllib.parse

import pytest
import torch
from conftest import TINY_RELEASE, clip_path

from bicodec_plugin.formats.weights import ReleaseLoadError

RELEASE_ID = "SparkAudio/Spark-TTS-0.5B"
EXPORT_ID = "someone/bicodec-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# What the codec needs from a release: all of it but the LLM and the .bin twin.
RELEASE_NEEDED = [
    "BiCodec/config.yaml",
    "BiCodec/model.safetensors",
    "config.yaml",
    "wav2vec2-large-xlsr-53/config.json",
    "wav2vec2-large-xlsr-53/model.safetensors",
    "wav2vec2-large-xlsr-53/preprocessor_config.json",
]
EXPORT_NEEDED = ["codec.safetensors", "hyperparams.yaml", "wav2vec2/model.safetensors"]
CLIP = "spk2_snt1"


class FakeHub:
    """A local HTTP server answering ``huggingface_hub``'s download endpoint.

    Arguments
    ---------
    repos : dict
        Hub id -> local folder served as that repository (revision ``main``).
    """

    def __init__(self, repos):
        self.repos = repos
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def downloads(self):
        """Files sent with GET, sorted."""
        return sorted(path for method, _, path in self.requests if method == "GET")

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler, body):
        path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
        match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match is None:
            return self._error(handler, 404, "RepoNotFound")
        repo, revision, filename = match.groups()
        self.requests.append((handler.command, repo, filename))
        if repo not in self.repos:
            return self._error(handler, 404, "RepoNotFound")
        if revision not in ("main", COMMIT):
            return self._error(handler, 404, "RevisionNotFound")
        file = os.path.join(self.repos[repo], filename)
        if not os.path.isfile(file):
            return self._error(handler, 404, "EntryNotFound")
        with open(file, "rb") as fin:
            data = fin.read()
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    @staticmethod
    def _error(handler, status, code):
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


def _release_repo(folder):
    """The tiny release as a hub repository, with an LLM and a .bin twin next to it."""
    for root, _, files in os.walk(TINY_RELEASE):
        for name in files:
            source = os.path.join(root, name)
            target = os.path.join(folder, os.path.relpath(source, TINY_RELEASE))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(source, target)
    for name in ("LLM/model.safetensors", "LLM/config.json", "README.md"):
        os.makedirs(os.path.join(folder, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(folder, name), "wb") as fout:
            fout.write(b"not needed by the codec")
    with open(os.path.join(folder, "wav2vec2-large-xlsr-53", "pytorch_model.bin"), "wb") as fout:
        fout.write(b"a second copy of the weights, never fetched")
    return str(folder)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_wav2vec2_dir):
    """A tiny generator exported as training does (local wav2vec2 copied along)."""
    from hyperpyyaml import load_hyperpyyaml

    from bicodec_plugin.formats.export import export_codec

    path = os.path.join(os.path.dirname(__file__), "..", "hparams", "bicodec_tiny_wav2vec2.yaml")
    with open(path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(
            fin, {"ssl_source": tiny_wav2vec2_dir, "train_manifest": "unused.jsonl"}
        )
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking usage EMA
        hparams["codec"].quantizer.cluster_size.uniform_()
    return export_codec(hparams, str(tmp_path_factory.mktemp("export") / "bicodec"))


@pytest.fixture
def hub(reference_dir, exported, tmp_path, monkeypatch):
    """The fake hub serving the tiny release and the export, an empty cache, online."""
    from huggingface_hub import constants

    repos = {RELEASE_ID: _release_repo(tmp_path / "repo_release"), EXPORT_ID: exported}
    server = FakeHub(repos)
    cache = str(tmp_path / "hf_cache")
    # What HF_ENDPOINT / HF_HUB_CACHE set before start-up give (huggingface_hub
    # reads them at import).
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    # CI runs with both offline switches on; this fixture is the network.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.close()


def _tokens(tokenizer):
    with torch.no_grad():
        return tokenizer.encode_file(clip_path(CLIP))


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_release_by_hub_id_then_offline(hub, tiny_tokenizer, monkeypatch):
    """A hub id fetches the codec's files only; the second load, offline, sends no request."""
    from bicodec_plugin.inference import BiCodecTokenizer

    expected = _tokens(tiny_tokenizer)  # the local-folder load
    tok = BiCodecTokenizer.from_release(RELEASE_ID, run_opts={"device": "cpu"})
    assert hub.downloads() == RELEASE_NEEDED
    assert _same(_tokens(tok), expected)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read when fetching, not only at import
    hub.requests.clear()
    tok = BiCodecTokenizer.from_release(RELEASE_ID, run_opts={"device": "cpu"})
    assert hub.requests == []
    assert _same(_tokens(tok), expected)


def test_release_savedir(hub, tmp_path, monkeypatch):
    """``savedir`` gets the release layout (links into the cache); offline it is used as is."""
    from bicodec_plugin.formats.hub import fetch_release

    savedir = tmp_path / "spark"
    folder = fetch_release(RELEASE_ID, savedir=str(savedir))
    assert folder == str(savedir.absolute())
    listed = sorted(
        os.path.relpath(os.path.join(root, name), savedir)
        for root, _, files in os.walk(savedir)
        for name in files
    )
    assert listed == RELEASE_NEEDED == hub.downloads()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    assert fetch_release(RELEASE_ID, savedir=str(savedir)) == folder
    assert hub.requests == []


def test_offline_miss_names_the_file(hub, monkeypatch):
    """Offline, a file neither local nor cached is refused with its name; nothing is sent."""
    from bicodec_plugin.formats.hub import fetch_model_file
    from bicodec_plugin.inference import BiCodecTokenizer

    fetch_model_file(RELEASE_ID, "config.yaml")  # a partial cache: config.yaml only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    with pytest.raises(
        ReleaseLoadError,
        match=r"Spark-TTS-0\.5B: 'BiCodec/config\.yaml' is not in the local hub cache "
        r"\(.*hf_cache\) and HF_HUB_OFFLINE is set",
    ):
        BiCodecTokenizer.from_release(RELEASE_ID)
    with pytest.raises(ReleaseLoadError, match=r"bicodec-tiny: 'hyperparams\.yaml' is not in"):
        BiCodecTokenizer.from_hparams(EXPORT_ID)
    assert hub.requests == []


def test_missing_on_the_hub_names_the_file(hub):
    """Online, a repository or file the hub lacks is named in the error."""
    from bicodec_plugin.formats.hub import fetch_model_file
    from bicodec_plugin.inference import BiCodecTokenizer

    with pytest.raises(ReleaseLoadError, match=r"no-such/model: not a local folder, and the hub"):
        BiCodecTokenizer.from_release("no-such/model")
    with pytest.raises(ReleaseLoadError, match=r"has no file 'BiCodec/nothing\.bin'"):
        fetch_model_file(RELEASE_ID, "BiCodec/nothing.bin")


def test_export_by_hub_id_then_offline(hub, exported, tmp_path, monkeypatch):
    """An exported folder loads by hub id (subclass and plain Pretrained), then offline."""
    from huggingface_hub import constants
    from speechbrain.inference.interfaces import Pretrained

    from bicodec_plugin.inference import BiCodecTokenizer

    local = BiCodecTokenizer.from_hparams(exported, run_opts={"device": "cpu"})
    expected = _tokens(local)
    savedir = tmp_path / "savedir"
    tok = BiCodecTokenizer.from_hparams(EXPORT_ID, savedir=str(savedir), run_opts={"device": "cpu"})
    assert hub.downloads() == EXPORT_NEEDED  # not wav2vec2/config.json: it is in the yaml
    assert sorted(os.listdir(savedir)) == [
        "codec.safetensors",
        "hyperparams.yaml",
        "ssl.safetensors",
    ]
    assert _same(_tokens(tok), expected)

    # Plain SpeechBrain: no override, no subclass; the same weights (unfolded here).
    wav = local.load_file(clip_path(CLIP))[0][None]
    with torch.no_grad():
        local_plain = Pretrained.from_hparams(exported).mods.codec.tokenize(wav)
        hub_plain = Pretrained.from_hparams(EXPORT_ID).mods.codec.tokenize(wav)
    assert _same(hub_plain, local_plain)

    # Offline, from the cache: the subclass reads HF_HUB_OFFLINE when it
    # fetches; plain SpeechBrain relies on huggingface_hub's start-up value.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    tok = BiCodecTokenizer.from_hparams(EXPORT_ID, run_opts={"device": "cpu"})
    assert hub.requests == []
    assert _same(_tokens(tok), expected)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with torch.no_grad():
        offline_plain = Pretrained.from_hparams(EXPORT_ID).mods.codec.tokenize(wav)
    assert hub.requests == []
    assert _same(offline_plain, local_plain)


def test_export_offline_miss_names_the_weights(hub, monkeypatch):
    """An export whose yaml is cached but not its weights: the error names the weight file."""
    from bicodec_plugin.formats.hub import fetch_model_file
    from bicodec_plugin.inference import BiCodecTokenizer

    fetch_model_file(EXPORT_ID, "hyperparams.yaml")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReleaseLoadError, match=r"bicodec-tiny: 'codec\.safetensors' is not in"):
        BiCodecTokenizer.from_hparams(EXPORT_ID)


def test_export_weights_are_loaded(exported, tiny_wav2vec2_dir):
    """The front-end built from the yaml's config gets the copied weights (not its random init)."""
    from speechbrain.inference.interfaces import Pretrained
    from transformers import Wav2Vec2Model

    ssl = Pretrained.from_hparams(exported).hparams.ssl
    reference = Wav2Vec2Model.from_pretrained(tiny_wav2vec2_dir).state_dict()
    state = ssl.model.state_dict()
    assert len(ssl.model.encoder.layers) == 16  # truncated: layers 16, 17 and the norm dropped
    assert state and all(torch.equal(v, reference[k]) for k, v in state.items())


def _legacy_bin(folder, tiny_wav2vec2_dir):
    """The tiny wav2vec2 as an old pretraining checkpoint: ``pytorch_model.bin``,
    ``wav2vec2.`` key prefix and ``weight_g``/``weight_v`` (as XLS-R-53 ships)."""
    import shutil

    from safetensors.torch import load_file

    shutil.copytree(tiny_wav2vec2_dir, folder)
    state = load_file(os.path.join(folder, "model.safetensors"))
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        renamed["wav2vec2." + key] = value
    renamed["quantizer.codevectors"] = torch.zeros(1, 4, 8)  # pretraining heads, unused
    torch.save(renamed, os.path.join(folder, "pytorch_model.bin"))
    os.remove(os.path.join(folder, "model.safetensors"))
    return str(folder)


def test_export_with_bin_wav2vec2(tmp_path, tiny_wav2vec2_dir):
    """A wav2vec2 folder with an old ``.bin`` checkpoint exports and loads the same weights."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.inference.interfaces import Pretrained
    from transformers import Wav2Vec2Model

    from bicodec_plugin.formats.export import export_codec

    legacy = _legacy_bin(tmp_path / "w2v_bin", tiny_wav2vec2_dir)
    path = os.path.join(os.path.dirname(__file__), "..", "hparams", "bicodec_tiny_wav2vec2.yaml")
    with open(path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, {"ssl_source": legacy, "train_manifest": "unused.jsonl"})
    folder = export_codec(hparams, str(tmp_path / "export"))
    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as fin:
        assert "ssl: wav2vec2/pytorch_model.bin" in fin.read()
    ssl = Pretrained.from_hparams(folder).hparams.ssl
    reference = Wav2Vec2Model.from_pretrained(tiny_wav2vec2_dir).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in ssl.model.state_dict().items())


def test_frontend_weights_that_do_not_fit_are_refused(tmp_path, tiny_wav2vec2_dir):
    """Weights of another wav2vec2 size are refused, naming the file."""
    from transformers import Wav2Vec2Config

    from bicodec_plugin.codec.lobes.frontends import Wav2Vec2LayerMix
    from bicodec_plugin.formats.export import load_frontend_weights
    from bicodec_plugin.testing import make_tiny_wav2vec2

    config = Wav2Vec2Config.from_pretrained(tiny_wav2vec2_dir)
    ssl = Wav2Vec2LayerMix(config, init_weights=False)
    other = make_tiny_wav2vec2(str(tmp_path / "w2v32"), hidden_size=32, num_layers=18)
    weights = os.path.join(other, "model.safetensors")
    with pytest.raises(ReleaseLoadError, match=re.escape(weights)):
        load_frontend_weights(ssl, weights)
    with pytest.raises(ReleaseLoadError, match=r"must be \.safetensors or \.bin"):
        load_frontend_weights(ssl, os.path.join(other, "config.json"))
