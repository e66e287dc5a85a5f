#!/usr/bin/env python3
"""Generates a lead CSV (phone,name,email,tags) for /api/v1/leads/bulk-import.

The file is deterministic for a given --seed. Rows are one of three kinds:

* ok        a lead with a phone and email never used before in the file;
* duplicate a repeat of an earlier ok row: half repeat its phone (written in another format),
            half repeat its email (with a fresh phone), so the importer's in-file check must catch both;
* invalid   a row the importer must reject: a too-short phone, a missing phone, or a malformed email
            (with a fresh phone).

Phones are Chilean mobiles `+569 P NNNNNNN`: P is --phone-prefix (one digit) so files generated for
different purposes never collide, NNNNNNN a per-file counter.

With --compact, rows are short (one first name and one surname, a short email, no tags, the canonical
phone spelling for ok rows) so that a 1 000 000-row file stays under the 50 MB upload limit.

Prints a JSON object with the expected import counts (and how many rows --needle matches,
accent-insensitively) on stdout.
"""

import argparse
import csv
import json
import random
import sys
import unicodedata

FIRST = [
    "María", "José", "Juan", "Ana", "Sofía", "Matías", "Benjamín", "Valentina", "Martina", "Agustín",
    "Catalina", "Tomás", "Francisca", "Joaquín", "Isidora", "Lucas", "Antonia", "Vicente", "Fernanda",
    "Ignacio", "Constanza", "Cristóbal", "Javiera", "Nicolás", "Camila", "Sebastián", "Florencia",
    "Felipe", "Ramón", "Inés",
]
# 40 surnames, two per name: a given surname appears in about 5 % of the names.
SURNAMES = [
    "González", "Muñoz", "Rojas", "Díaz", "Pérez", "Soto", "Contreras", "Silva", "Martínez", "Sepúlveda",
    "Morales", "Rodríguez", "López", "Fuentes", "Hernández", "Torres", "Araya", "Flores", "Espinoza",
    "Valenzuela", "Castillo", "Tapia", "Reyes", "Gutiérrez", "Castro", "Pizarro", "Álvarez", "Vásquez",
    "Sánchez", "Fernández", "Ramírez", "Carrasco", "Gómez", "Cortés", "Herrera", "Núñez", "Jara",
    "Vergara", "Rivera", "Figueroa",
]
TAGS = ["vip", "norte", "sur", "inversion", "arriendo", "compra", "referido", "web"]


def fold(s: str) -> str:
    """Lower-case, accent-free (the API's `search_text` form)."""
    return "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)).lower()


def phone_formats(prefix: str, n: int):
    """Four spellings of the same mobile number."""
    body = f"9{prefix}{n:07d}"  # 9 digits
    return [
        f"+56{body}",
        f"+56 {body[0]} {body[1:5]} {body[5:]}",
        f"{body[0]} {body[1:5]} {body[5:]}",
        f"56{body}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="data rows (excluding the header)")
    ap.add_argument("--dup-pct", type=float, default=0.0)
    ap.add_argument("--invalid-pct", type=float, default=0.0)
    ap.add_argument("--phone-prefix", default="1", help="one digit, see the module doc")
    ap.add_argument("--domain", default="bench.cl")
    ap.add_argument("--needle", default="Muñoz", help="count the rows a search for this matches")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--compact", action="store_true", help="short rows (see the module doc)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if len(a.phone_prefix) != 1 or not a.phone_prefix.isdigit():
        ap.error("--phone-prefix must be one digit")
    if a.rows < 1 or a.rows > 4_000_000:
        ap.error("--rows must be between 1 and 4 000 000")

    rng = random.Random(a.seed)
    n_dup = round(a.rows * a.dup_pct / 100)
    n_inv = round(a.rows * a.invalid_pct / 100)
    n_ok = a.rows - n_dup - n_inv
    if n_ok < 1 or (n_dup and n_ok < 1):
        ap.error("too many duplicate/invalid rows")
    kinds = ["dup"] * n_dup + ["inv"] * n_inv + ["ok"] * (n_ok - 1)
    rng.shuffle(kinds)
    kinds.insert(0, "ok")  # a duplicate needs an earlier row to repeat

    needle = fold(a.needle)
    counter = 0  # phone numbers handed out; every row kind draws from it so phones never clash by accident
    ok_rows = []  # (phone number, email) of ok rows, for duplicates to repeat
    matches = 0
    dup_phone = dup_email = 0
    inv_kinds = {"short_phone": 0, "missing_phone": 0, "bad_email": 0}

    def name():
        if a.compact:
            return f"{rng.choice(FIRST)} {rng.choice(SURNAMES)}"
        return f"{rng.choice(FIRST)} {rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"

    def tags():
        if a.compact:
            return ""
        k = rng.choice((0, 0, 1, 1, 2))
        return ",".join(rng.sample(TAGS, k))

    def spelling(n):
        forms = phone_formats(a.phone_prefix, n)
        return forms[0] if a.compact else rng.choice(forms)

    def email_of(n):
        return f"l{a.phone_prefix}{n}@{a.domain}" if a.compact else f"lead{a.phone_prefix}{n:07d}@{a.domain}"

    with open(a.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["phone", "name", "email", "tags"])
        for i, kind in enumerate(kinds):
            if kind == "ok":
                counter += 1
                nm = name()
                email = email_of(counter)
                w.writerow([spelling(counter), nm, email, tags()])
                ok_rows.append((counter, email))
                if needle and needle in fold(nm):
                    matches += 1
            elif kind == "dup":
                orig_n, orig_email = rng.choice(ok_rows)
                if i % 2 == 0:
                    dup_phone += 1
                    w.writerow([rng.choice(phone_formats(a.phone_prefix, orig_n)), name(), "", tags()])
                else:
                    dup_email += 1
                    counter += 1
                    w.writerow([phone_formats(a.phone_prefix, counter)[0], name(), orig_email.upper(), tags()])
            else:
                r = i % 3
                if r == 0:
                    inv_kinds["short_phone"] += 1
                    w.writerow([f"9{i % 10000:04d}", name(), "", ""])
                elif r == 1:
                    inv_kinds["missing_phone"] += 1
                    w.writerow(["", name(), "", tags()])
                else:
                    inv_kinds["bad_email"] += 1
                    counter += 1
                    w.writerow([phone_formats(a.phone_prefix, counter)[0], name(), f"no-es-email-{i}", ""])

    json.dump(
        {
            "file": a.out,
            "rows": a.rows,
            "expected": {"imported": n_ok, "duplicates": n_dup, "invalid": n_inv},
            "duplicates_by_phone": dup_phone,
            "duplicates_by_email": dup_email,
            "invalid_kinds": inv_kinds,
            "needle": a.needle,
            "needle_matches": matches,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
