"""Sealed token storage: never the token in clear, 0600 files, other credentials cannot open it."""

from __future__ import annotations

import stat
import time

from absorb_provider.token_store import FileStore, Token, TokenCipher


def test_sealed_file_holds_no_token_and_is_private(isolated_token_state):
    token = Token("tok-0123456789abcdef", time.time() + 3600)
    store = FileStore("identity1")
    store.write(TokenCipher(b"creds").seal(token))
    raw = store.path.read_bytes()
    assert b"tok-0123456789abcdef" not in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert TokenCipher(b"creds").open(store.read()) == token
    assert TokenCipher(b"other creds").open(store.read()) is None
    assert "tok-" not in repr(token)


def test_expiry_margin():
    assert not Token("t", time.time() + 30).is_fresh()
    assert Token("t", time.time() + 3600).is_fresh()
