"""Writes the synthetic PII evaluation set: bench/data/pii/eval.jsonl (development) and heldout.jsonl.

    python bench/pii_data.py

Every value is generated (fictional people, checksummed test numbers), never collected. A record is
`{"id", "lang", "text", "spans": [{"start", "end", "kind"}], "negatives": [{"start", "end", "kind"}]}`:
`spans` are what must be masked, `negatives` look like personal data and are not (order numbers, dates,
Luhn-invalid card-length numbers, hashes, UUIDs, ...), kept only to name false positives in the report.
The held-out half uses another seed and a disjoint half of the sentence templates, so nothing tuned
on the development half has seen its wording. Person names and postal addresses are labeled too
(NAME, ADDRESS) although no recognizer looks for them: the report shows that they are missed.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers

OUT = Path(__file__).resolve().parent / "data" / "pii"
LANGS = ("en", "de", "fr", "es")

# Sentence frames per language; {a} and {b} each take a phrase holding PII or a hard negative.
FRAMES: dict[str, list[str]] = {
    "en": ["Hi, {a}. Also {b}.", "{a} - and {b}, thanks!", "Quick question: {a}? By the way, {b}.",
           "Please update my account. {a}; {b}.", "Can you draft a reply saying {a} and {b}?",
           "Summarise this ticket: {a}. Customer adds that {b}.", "{a}. {b}.", "FYI {a}, while {b}."],
    "de": ["Hallo, {a}. Außerdem {b}.", "{a} – und {b}, danke!", "Kurze Frage: {a}? Übrigens {b}.",
           "Bitte mein Konto aktualisieren. {a}; {b}.", "Schreib eine Antwort: {a} und {b}.",
           "Fasse das Ticket zusammen: {a}. Der Kunde ergänzt, {b}.", "{a}. {b}.", "Zur Info: {a}, während {b}."],
    "fr": ["Bonjour, {a}. Aussi, {b}.", "{a} – et {b}, merci !", "Petite question : {a} ? Au fait, {b}.",
           "Merci de mettre à jour mon compte. {a} ; {b}.", "Rédige une réponse : {a} et {b}.",
           "Résume ce ticket : {a}. Le client ajoute que {b}.", "{a}. {b}.", "Pour info : {a}, alors que {b}."],
    "es": ["Hola, {a}. Además, {b}.", "{a} – y {b}, ¡gracias!", "Una pregunta: ¿{a}? Por cierto, {b}.",
           "Por favor actualiza mi cuenta. {a}; {b}.", "Redacta una respuesta: {a} y {b}.",
           "Resume este ticket: {a}. El cliente añade que {b}.", "{a}. {b}.",
           "Para tu información: {a}, mientras {b}."],
}

# Phrases around a value, per kind family and language ({x} is the value).
PHRASES: dict[str, dict[str, list[str]]] = {
    "EMAIL": {"en": ["write to me at {x}", "my email is {x}", "cc {x} on it", "contact: {x}"],
              "de": ["schreib mir an {x}", "meine E-Mail ist {x}", "bitte {x} in CC", "Kontakt: {x}"],
              "fr": ["écris-moi à {x}", "mon e-mail est {x}", "mets {x} en copie", "contact : {x}"],
              "es": ["escríbeme a {x}", "mi correo es {x}", "pon a {x} en copia", "contacto: {x}"]},
    "PHONE": {"en": ["call me on {x}", "my number is {x}", "text {x} when ready", "reach us at {x}"],
              "de": ["ruf mich unter {x} an", "meine Nummer ist {x}", "schick eine SMS an {x}", "Tel.: {x}"],
              "fr": ["appelez-moi au {x}", "mon numéro est le {x}", "envoie un SMS au {x}", "tél : {x}"],
              "es": ["llámame al {x}", "mi número es {x}", "manda un SMS al {x}", "tel.: {x}"]},
    "CARD": {"en": ["my card is {x}", "charge {x} please", "I paid with {x}", "card number {x}"],
             "de": ["meine Karte ist {x}", "bitte {x} belasten", "ich habe mit {x} bezahlt", "Kartennummer {x}"],
             "fr": ["ma carte est la {x}", "débitez la {x}", "j'ai payé avec la {x}", "numéro de carte {x}"],
             "es": ["mi tarjeta es {x}", "cárgalo a {x}", "pagué con la {x}", "número de tarjeta {x}"]},
    "IBAN": {"en": ["my IBAN is {x}", "refund to {x}", "send it to account {x}", "IBAN: {x}"],
             "de": ["meine IBAN lautet {x}", "bitte auf {x} erstatten", "überweise an {x}", "IBAN: {x}"],
             "fr": ["mon IBAN est {x}", "remboursez sur {x}", "virement sur le compte {x}", "IBAN : {x}"],
             "es": ["mi IBAN es {x}", "reembolsa a {x}", "transfiere a la cuenta {x}", "IBAN: {x}"]},
    "SSN": {"en": ["my SSN is {x}", "social security number {x}", "the form says {x} for SSN", "SSN: {x}"],
            "de": ["meine SSN ist {x}", "US-Sozialversicherungsnummer {x}", "im Formular steht {x}", "SSN: {x}"],
            "fr": ["mon SSN est {x}", "numéro de sécurité sociale US {x}", "le formulaire indique {x}", "SSN : {x}"],
            "es": ["mi SSN es {x}", "número de seguro social {x}", "el formulario pone {x}", "SSN: {x}"]},
    "IP": {"en": ["the server at {x} is down", "login came from {x}", "whitelist {x}", "IP {x}"],
           "de": ["der Server {x} ist down", "Login kam von {x}", "bitte {x} freischalten", "IP {x}"],
           "fr": ["le serveur {x} est en panne", "connexion depuis {x}", "autorisez {x}", "IP {x}"],
           "es": ["el servidor {x} no responde", "el acceso vino de {x}", "permite {x}", "IP {x}"]},
    "KEY": {"en": ["my key is {x}", "I set {x} in the env", "it fails with {x}", "token {x}"],
            "de": ["mein Schlüssel ist {x}", "ich habe {x} gesetzt", "es scheitert mit {x}", "Token {x}"],
            "fr": ["ma clé est {x}", "j'ai mis {x} dans l'env", "ça échoue avec {x}", "jeton {x}"],
            "es": ["mi clave es {x}", "puse {x} en el entorno", "falla con {x}", "token {x}"]},
    "NAME": {"en": ["my name is {x}", "ask {x} about it"], "de": ["ich heiße {x}", "frag {x} danach"],
             "fr": ["je m'appelle {x}", "demande à {x}"], "es": ["me llamo {x}", "pregunta a {x}"]},
    "ADDRESS": {"en": ["ship it to {x}", "I live at {x}"], "de": ["liefere an {x}", "ich wohne in {x}"],
                "fr": ["livrez au {x}", "j'habite au {x}"], "es": ["envíalo a {x}", "vivo en {x}"]},
    "NEG": {"en": ["order {x} is late", "see {x}", "it happened at {x}", "ref {x}"],
            "de": ["Bestellung {x} ist spät", "siehe {x}", "es passierte am {x}", "Ref. {x}"],
            "fr": ["la commande {x} est en retard", "voir {x}", "c'est arrivé le {x}", "réf. {x}"],
            "es": ["el pedido {x} llega tarde", "ver {x}", "pasó el {x}", "ref. {x}"]},
}

FIRST = ["Jane", "Lukas", "Camille", "Lucía", "Ravi", "Emma", "Jonas", "Chloé", "Mateo", "Priya", "Oliver", "Lea"]
LAST = ["Doe", "Müller", "Dubois", "García", "Sharma", "Smith", "Schneider", "Moreau", "López", "Patel", "Brown"]
DOMAINS = ["example.com", "example.co.uk", "example.de", "mail.example.fr", "example.es", "example.org", "test.io"]
STREETS = {"en": "{n} Baker Street, London NW1 6XE", "de": "Hauptstraße {n}, 10115 Berlin",
           "fr": "{n} rue de Rivoli, 75001 Paris", "es": "Calle Mayor {n}, 28013 Madrid"}


def luhn_digit(body: str) -> str:
    doubled = [int(ch) * (2 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(body))]
    return str(-sum(d - 9 if d > 9 else d for d in doubled) % 10)


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    ascii_ = {"ü": "ue", "é": "e", "í": "i", "ç": "c"}
    local = rng.choice(["{f}.{l}", "{f}{n}", "{f}_{l}", "{f}.{l}+{tag}", "{i}{l}"]).format(
        f=first.lower(), l=last.lower(), n=rng.randrange(100), tag=rng.choice(["shop", "work"]), i=first[0].lower())
    for k, v in ascii_.items():
        local = local.replace(k, v)
    return f"{local}@{rng.choice(DOMAINS)}"


# (region, national-significant-number generator, formats as (international?, separators))
PHONE_PLANS: dict[str, Callable[[random.Random], str]] = {
    "US": lambda r: rng_choice(r, ["212", "415", "617", "312", "206", "303"]) + str(r.randint(2, 9)) + digits(r, 6),
    "GB": lambda r: rng_choice(r, ["20" + str(r.randint(7, 8)) + digits(r, 7),
                                   "7" + str(r.randint(4, 9)) + digits(r, 8)]),
    "DE": lambda r: rng_choice(r, ["30" + digits(r, 7), "89" + digits(r, 7),
                                   "15" + str(r.randint(1, 2)) + digits(r, 8)]),
    "FR": lambda r: str(r.choice([1, 2, 3, 4, 5, 6, 7])) + digits(r, 8),
    "IN": lambda r: str(r.randint(7, 9)) + digits(r, 9),
}


def rng_choice(rng: random.Random, options: list[str]) -> str:
    return rng.choice(options)


def phone(rng: random.Random, *, half: int = 0) -> str:
    while True:
        region = rng.choice(list(PHONE_PLANS))
        nsn = PHONE_PLANS[region](rng)
        number = phonenumbers.parse(nsn, region) if region != "US" else phonenumbers.parse(nsn, "US")
        if phonenumbers.is_valid_number(number):
            break
    if half == 1 and rng.random() < 0.25:
        # held-out only, never seen while tuning: the 00 trunk prefix, and "+44 (0)20 ..." style
        intl = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        code, _, rest = intl.partition(" ")
        return rng.choice(["00" + code[1:] + " " + rest, f"{code} (0){rest}" if region in ("GB", "DE") else intl])
    style = rng.choice(["intl", "national", "e164", "custom"])
    if style == "intl":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style == "national":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if style == "e164":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # the way people type them: dots, dashes, US parentheses or bare digits
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    sep = rng.choice([".", "-", " ", ""])
    if region == "US" and sep == "":
        return nsn
    groups = [g for g in national.replace("(", "").replace(")", "").replace("-", " ").split(" ") if g]
    return sep.join(groups)


def card(rng: random.Random, *, valid: bool = True) -> str:
    network = rng.choice(["visa", "mc", "mc2", "amex"])
    body = {"visa": "4" + digits(rng, 14), "mc": "5" + str(rng.randint(1, 5)) + digits(rng, 13),
            "mc2": "2" + str(rng.randint(221, 720)) + digits(rng, 11),
            "amex": rng.choice(["34", "37"]) + digits(rng, 12)}[network]
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = body + check
    sep = rng.choice([" ", "-", ""])
    if network == "amex":
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


IBAN_BBAN: dict[str, Callable[[random.Random], str]] = {
    "DE": lambda r: digits(r, 18), "FR": lambda r: digits(r, 23), "ES": lambda r: digits(r, 20),
    "IT": lambda r: r.choice(string.ascii_uppercase) + digits(r, 22), "NL": lambda r: "ABNA" + digits(r, 10),
    "GB": lambda r: "NWBK" + digits(r, 14), "AT": lambda r: digits(r, 16), "BE": lambda r: digits(r, 12),
}


def iban(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_BBAN))
    bban = IBAN_BBAN[country](rng)
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    value = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    sep = rng.choice(["-", "-", "-", " "])
    return sep.join([value[:3], value[3:5], value[5:]])


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randrange(65536):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def key(rng: random.Random) -> tuple[str, str]:
    """(the text to insert, the secret inside it); a bearer token is preceded by its scheme."""
    b64 = string.ascii_letters + string.digits + "-_"
    kinds: dict[str, Callable[[], str]] = {
        "openai": lambda: rng.choice(["sk-", "sk-proj-"]) + token(rng, 48, b64),
        "anthropic": lambda: "sk-ant-api03-" + token(rng, 93, b64),
        "aws": lambda: "AKIA" + token(rng, 16, string.ascii_uppercase + string.digits),
        "github": lambda: "ghp_" + token(rng, 36),
        "github_pat": lambda: "github_pat_" + token(rng, 22) + "_" + token(rng, 59),
        "slack": lambda: f"xox{rng.choice('bpars')}-{digits(rng, 12)}-{digits(rng, 12)}-{token(rng, 24)}",
        "stripe": lambda: rng.choice(["sk_live_", "pk_live_"]) + token(rng, 24),
        "google": lambda: "AIza" + token(rng, 35, b64),
        "jwt": lambda: "eyJ" + token(rng, 30, b64) + ".eyJ" + token(rng, 40, b64) + "." + token(rng, 43, b64),
        "bearer": lambda: token(rng, 40, b64),
    }
    name = rng.choice(list(kinds))
    secret = kinds[name]()
    return ("Authorization: Bearer " + secret, secret) if name == "bearer" else (secret, secret)


def negative(rng: random.Random) -> tuple[str, str]:
    """(value, what it is): things shaped like personal data that are not."""
    hexdigits = "0123456789abcdef"
    options: list[tuple[str, Callable[[], str]]] = [
        ("order", lambda: rng.choice(["#", "A-", "ORD-", "Nr. "]) + digits(rng, rng.randint(4, 7))),
        ("date", lambda: rng.choice([f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                                     f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2026",
                                     f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/2026"])),
        ("time", lambda: rng.choice([f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                                     f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"])),
        ("version", lambda: rng.choice(["v", "", "version "]) + ".".join(str(rng.randint(0, 20)) for _ in range(3))),
        ("luhn_invalid", lambda: card(rng, valid=False)),
        ("invoice", lambda: rng.choice(["INV-", "RE-", "FAC-"]) + f"2026-{digits(rng, 6)}"),
        ("tracking", lambda: rng.choice(["1Z" + token(rng, 6, string.ascii_uppercase + string.digits) + digits(rng, 10),
                                         "JJD" + digits(rng, 18)])),
        ("hash", lambda: token(rng, rng.choice([7, 40, 64]), hexdigits)),
        ("uuid", lambda: "-".join(token(rng, n, hexdigits) for n in (8, 4, 4, 4, 12))),
        ("price", lambda: rng.choice([f"${rng.randint(1, 9)},{digits(rng, 3)}.99", f"{rng.randint(1, 999)},99 €",
                                      f"€{rng.randint(1, 9)}.{digits(rng, 3)},00"])),
    ]
    kind, make = rng.choice(options)
    return make(), kind


def value(rng: random.Random, kind: str, lang: str, *, half: int) -> tuple[str, str]:
    if kind == "KEY":
        return key(rng)
    if kind == "NAME":
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        return name, name
    if kind == "ADDRESS":
        address = STREETS[lang].format(n=rng.randint(1, 200))
        return address, address
    if kind == "PHONE":
        number = phone(rng, half=half)
        return number, number
    made = {"EMAIL": email, "CARD": card, "IBAN": iban, "SSN": ssn, "IP": ip}[kind](rng)
    return made, made


KIND_WEIGHTS = {"EMAIL": 3, "PHONE": 5, "CARD": 3, "IBAN": 3, "SSN": 2, "IP": 2, "KEY": 4, "NAME": 1, "ADDRESS": 1}


def record(rng: random.Random, i: int, *, half: int) -> dict[str, object]:
    lang = rng.choice(LANGS)
    # templates alternate between the halves: the held-out half's wording is unseen
    frame = rng.choice(FRAMES[lang][half::2])
    spans: list[dict[str, object]] = []
    negatives: list[dict[str, object]] = []
    parts = frame.split("{")
    text = parts[0]
    for part in parts[1:]:
        rest = part.split("}", 1)[1]
        if rng.random() < 0.3:
            inserted, label = negative(rng)
            secret, family, target = inserted, "NEG", negatives
        else:
            label = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
            (inserted, secret), family, target = value(rng, label, lang, half=half), label, spans
        before, after = rng.choice(PHRASES[family][lang][half::2]).split("{x}")
        start = len(text) + len(before) + inserted.index(secret)
        target.append({"start": start, "end": start + len(secret), "kind": label})
        text += before + inserted + after + rest
    return {"id": f"{'dh'[half]}{i:04d}", "lang": lang, "text": text, "spans": spans, "negatives": negatives}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for half, (name, seed, n) in enumerate([("eval.jsonl", 14, 800), ("heldout.jsonl", 41, 800)]):
        rng = random.Random(seed)
        with (OUT / name).open("w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps(record(rng, i, half=half), ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name} ({n} records)")


if __name__ == "__main__":
    main()
