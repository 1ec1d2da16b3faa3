"""aiges/wire/pb is generated from proto/ by scripts/gen-proto; fail when it is stale or hand-edited."""
from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from tests.utils import ROOT


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, cwd=ROOT)
    generated = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".py", ".pyi"))
    committed = sorted(p.name for p in (ROOT / "aiges" / "wire" / "pb").iterdir() if p.suffix in (".py", ".pyi"))
    assert generated == committed
    stale = [n for n in generated if not filecmp.cmp(tmp_path / n, ROOT / "aiges" / "wire" / "pb" / n, shallow=False)]
    assert not stale, f"aiges/wire/pb is stale: run scripts/gen-proto ({stale})"


def test_upstream_field_numbers_unchanged() -> None:
    from aiges.wire.pb import aiges_inner_pb2 as pb
    expect = {
        "Request": {"tag": 1, "params": 2, "list": 3},
        "RequestData": {"key": 1, "len": 2, "type": 3, "status": 4, "desc": 5, "data": 6},
        "ResponseData": {"key": 1, "len": 2, "type": 3, "status": 4, "desc": 5, "data": 6},
        "Response": {"tag": 1, "ret": 2, "list": 3},
        "CreateRequest": {"params": 1, "sid": 2, "tag": 3},
        "Handle": {"handle": 1, "err_code": 2},
        "WriteMessage": {"req": 1, "handle": 2, "sid": 3},
        "Ret": {"ret": 1}, "SvcId": {"serviceId": 1}, "Schema": {"data": 1}, "InitRequest": {"config": 1},
    }
    for msg, fields in expect.items():
        desc = getattr(pb, msg).DESCRIPTOR
        for name, number in fields.items():
            assert desc.fields_by_name[name].number == number, (msg, name)
    svc = pb.DESCRIPTOR.services_by_name["WrapperService"]
    assert pb.DESCRIPTOR.package == "aiges"
    for m in ("wrapperInit", "wrapperOnceExec", "wrapperSchema", "wrapperCreate", "wrapperWrite", "wrapperDestroy",
              "testStream", "communicate"):
        assert m in svc.methods_by_name
