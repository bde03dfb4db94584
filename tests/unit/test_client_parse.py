import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from specsweep.client import parse_log_slice
from specsweep.engine.options import ServerOptions, ServerSettings
from specsweep.engine.server import LlamaServer, _die_with_parent, parse_metrics

LOG = """
slot update_slots: id  0 | task 5 | accepted  2/ 3 draft tokens
slot update_slots: id  0 | task 5 | accepted  0/ 3 draft tokens
slot update_slots: id  0 | task 5 | accepted  1/ 1 draft tokens
slot print_timing: id  0 | task 5 | draft acceptance = 0.42857 (    3 accepted /     7 generated), mean len =  2.00
slot      release: id  0 | task 5 | stop processing: n_tokens = 40, truncated = 0
"""


def test_log_steps_give_exact_per_position_denominators():
    tally = parse_log_slice(LOG)
    assert tally.complete
    assert tally.steps == [(2, 3), (0, 3), (1, 1)]
    assert tally.drafted == 7 and tally.accepted == 3
    assert tally.drafted_per_pos() == [3, 2, 2]
    assert tally.accepted_per_pos() == [2, 1, 0]
    assert (tally.summary_accepted, tally.summary_drafted) == (3, 7)


def test_checkpoint_replay_is_not_a_step():
    text = ("accepted  1/ 4 draft tokens (restore checkpoint)\n"
            "accepted  1/ 2 draft tokens\n"
            "accepted  3/ 4 draft tokens\n")
    assert parse_log_slice(text).steps == [(1, 4), (3, 4)]


def test_incomplete_slice_is_flagged():
    assert not parse_log_slice("accepted 1/2 draft tokens\n").complete


def test_parse_metrics():
    text = """# HELP llamacpp:spec_decode_num_drafts_total x
llamacpp:spec_decode_num_drafts_total 12
llamacpp:tokens_predicted_total 40
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 9
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 4
"""
    values, per_pos = parse_metrics(text)
    assert values["spec_decode_num_drafts_total"] == 12 and values["tokens_predicted_total"] == 40
    assert per_pos == {0: 9, 1: 4}


def test_server_argv_from_the_flag_table():
    options = ServerOptions(model=Path("m.gguf"), spec_type="draft-simple", draft_n_max=3,
                            synth_rates=(0.9, 0.5), settings=ServerSettings(ctx_size=1024, extra_args=("--foo",)))
    argv = options.argv()
    assert argv[:2] == ["--model", "m.gguf"]
    assert argv[argv.index("--spec-synth-rates") + 1] == "0.9,0.5"
    assert argv[-1] == "--foo" and "--spec-draft-model" not in argv
    assert argv[argv.index("--ctx-size") + 1] == "1024" and "--request-timeout" not in argv


def test_stop_kills_a_process_that_ignores_sigterm_once_the_grace_is_over(tmp_path):
    """What a hung server meets: SIGTERM, then SIGKILL after the grace (the worker gives 3 s)."""
    ignore_term = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "open('ready', 'w').close(); time.sleep(60)")
    server = LlamaServer(Path(sys.executable), ServerOptions(model=Path("m.gguf")), tmp_path / "server.log")
    server.process = subprocess.Popen([sys.executable, "-c", ignore_term], cwd=tmp_path)
    while not (tmp_path / "ready").exists() and server.process.poll() is None:
        time.sleep(0.01)
    server.stop(grace=0.2)
    assert server.process.returncode == -signal.SIGKILL


def test_a_server_started_from_a_thread_that_blocks_signals_gets_them_and_is_killed_with_its_parent(tmp_path):
    """A Ray worker's threads block SIGINT and SIGTERM, and exec keeps the mask: the server must not
    inherit it, and the parent's death must SIGKILL it (a graceful stop can hang with nobody waiting)."""
    report = ("import ctypes, signal; v = ctypes.c_int(); ctypes.CDLL('libc.so.6').prctl(2, ctypes.byref(v)); "
              "blocked = next(l for l in open('/proc/self/status') if l.startswith('SigBlk:')).split()[1]; "
              "print(int(blocked, 16), v.value)")
    seen = {}

    def spawn():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        seen["out"] = subprocess.run([sys.executable, "-c", report], preexec_fn=_die_with_parent,
                                     capture_output=True, text=True, check=True).stdout.split()

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join()
    blocked, death_signal = map(int, seen["out"])
    assert blocked == 0 and death_signal == signal.SIGKILL
