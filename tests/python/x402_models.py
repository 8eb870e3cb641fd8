"""Validate edgent's x402 messages against the official x402 Python models (PyPI `x402`).

Usage: python x402_models.py FILE.json
FILE holds {"payment_required": ..., "payment_requirements": ..., "settle_response": ...}
as edgent sends them. Each must validate as the x402 v2 model AND survive a round trip
unchanged (pydantic ignores unknown fields, so the round trip is what catches a field the
model does not know). Exits 1 naming the first failure.
"""

import json
import sys

from x402.schemas.payments import PaymentRequired, PaymentRequirements
from x402.schemas.responses import SettleResponse

MODELS = {
    "payment_required": PaymentRequired,
    "payment_requirements": PaymentRequirements,
    "settle_response": SettleResponse,
}


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        sent = json.load(f)
    for key, model in MODELS.items():
        if key not in sent:
            print(f"FAIL {key}: missing from the input")
            return 1
        try:
            parsed = model.model_validate(sent[key])
        except Exception as e:  # pydantic.ValidationError, reported as is
            print(f"FAIL {key}: {e}")
            return 1
        again = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
        if again != sent[key]:
            print(f"FAIL {key}: does not round-trip:\n sent  {sent[key]}\n model {again}")
            return 1
        print(f"ok   {key} is a valid x402 {model.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
