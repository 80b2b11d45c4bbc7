"""Synthetic contacts with injected duplicates, for scale checks and tests of the engine.

Generated lazily from a seed, so a million records never need to exist at once. Each record
carries an ``entity`` key (ignored by the engine) naming the person it stands for; records with
the same entity are the true duplicates. The data is shaped to be hard in the ways real CRM data
is: given names follow a Zipf-like skew (many people called the same), family names and towns
repeat, and duplicates come with typos, swapped names, missing fields, re-formatted phones,
tagged or changed e-mail addresses and moved house.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

_GIVEN = (
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara richard susan "
    "joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony margaret "
    "mark sandra donald ashley steven kimberly paul emily andrew donna joshua michelle kenneth carol kevin "
    "amanda brian dorothy george melissa timothy deborah ronald stephanie edward rebecca jason sharon "
    "jeffrey laura ryan cynthia jacob kathleen gary amy nicholas angela eric shirley jonathan anna stephen "
    "brenda larry pamela justin emma scott nicole brandon helen benjamin samantha samuel katherine gregory "
    "christine alexander debra frank rachel patrick carolyn raymond janet jack catherine dennis maria jerry "
    "heather tyler diane aaron ruth jose julie adam olivia nathan joyce henry virginia douglas victoria "
    "zachary kelly peter lauren kyle christina noah joan ethan evelyn jeremy judith walter megan christian "
    "andrea keith cheryl roger hannah terry jacqueline gerald martha harold gloria sean teresa austin ann "
    "carl sara arthur madison lawrence frances dylan kathryn jesse janice jordan jean bryan abigail billy "
    "alice joe julia bruce judy gabriel sophia logan grace albert denise willie amber alan doris juan marilyn "
    "wayne danielle elijah beverly randy isabella roy theresa vincent diana ralph natalie eugene brittany "
    "russell charlotte bobby marie mason kayla philip alexis louis lori"
).split()
_SYLLABLES = (
    "an ber cal dan el fer gar han is jen kel lor man nor ol pen quin ros sal tor ul ven wes yor zan "
    "bro chen dal ford gill hart ing kin lee mont ny pet rich son ton vik worth ash burn cot"
).split()
_STREET_KINDS = ("street", "road", "avenue", "lane", "drive", "close", "place", "way", "court", "crescent")
_REGIONS = ("north", "south", "east", "west", "central", "highlands", "coast", "valley")
_DOMAINS = ("example.com", "mail.example", "post.example", "inbox.example", "corp.example")


def _zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def _cumulative(weights: list[float]) -> list[float]:
    # random.choices recomputes these on every call unless given them: O(vocabulary) per draw.
    return list(itertools.accumulate(weights))


def _syllable_word(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(low, high)))


def _typo(rng: random.Random, text: str) -> str:
    """One keyboard-style error: drop, double, swap adjacent or replace a character."""
    if len(text) < 3:
        return text
    position = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return text[:position] + text[position + 1:]
    if kind == 1:
        return text[:position] + text[position] + text[position:]
    if kind == 2:
        return text[:position - 1] + text[position] + text[position - 1] + text[position + 1:]
    return text[:position] + rng.choice("abcdefghijklmnopqrstuvwxyz") + text[position + 1:]


class _World:
    """The fixed vocabulary a data set draws from: surnames, towns with their postcodes and regions."""

    def __init__(self, rng: random.Random, people: int) -> None:
        self.surnames = sorted({_syllable_word(rng, 2, 3) for _ in range(max(200, people // 20))})
        self.surname_weights = _cumulative(_zipf_weights(len(self.surnames), 0.6))
        self.given_weights = _cumulative(_zipf_weights(len(_GIVEN), 0.9))
        towns = sorted({_syllable_word(rng, 2, 3) + rng.choice(("", "ton", "field", "by", "ham"))
                        for _ in range(max(50, people // 200))})
        self.towns = towns
        town_weights = _zipf_weights(len(towns), 0.8)
        self.town_weights = _cumulative(town_weights)
        # Postcodes are finer than towns: about one per 30 residents, at least two per town.
        total = sum(town_weights)
        self.postcodes = {town: [f"{rank:04d}{k:03d}" for k in range(max(2, round(weight / total * people / 30)))]
                          for rank, (town, weight) in enumerate(zip(towns, town_weights, strict=True))}
        self.regions = {town: rng.choice(_REGIONS) for town in towns}
        self.street_names = [_syllable_word(rng, 2, 3) for _ in range(max(100, people // 10))]


def _person(rng: random.Random, world: _World, entity: int) -> dict[str, Any]:
    first = rng.choices(_GIVEN, cum_weights=world.given_weights)[0]
    last = rng.choices(world.surnames, cum_weights=world.surname_weights)[0]
    town = rng.choices(world.towns, cum_weights=world.town_weights)[0]
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(65 * 365))
    return {
        "entity": f"p{entity}",
        "first_name": first.title(),
        "last_name": last.title(),
        # The entity number keeps addresses unique: two people never share an inbox here.
        "email": f"{first}.{last}{entity}@{rng.choice(_DOMAINS)}" if rng.random() < 0.8 else None,
        "phone": f"+4479{rng.randrange(10**8):08d}" if rng.random() < 0.7 else None,
        "birth_date": born if rng.random() < 0.6 else None,
        "address_street": f"{rng.randint(1, 300)} {rng.choice(world.street_names).title()} {rng.choice(_STREET_KINDS).title()}",
        "address_city": town.title(),
        "address_region": world.regions[town].title(),
        "address_postcode": rng.choice(world.postcodes[town]),
    }


def _variant(rng: random.Random, world: _World, person: dict[str, Any]) -> dict[str, Any]:
    """A second entry of the same person, with the kinds of damage CRM data collects."""
    copy = dict(person)
    for field in ("first_name", "last_name"):
        if copy[field] and rng.random() < 0.3:
            copy[field] = _typo(rng, copy[field])
    if rng.random() < 0.05:
        copy["first_name"], copy["last_name"] = copy["last_name"], copy["first_name"]
    if rng.random() < 0.1:
        copy["first_name"] = copy["first_name"].upper()
    if copy["email"]:
        roll = rng.random()
        if roll < 0.15:
            local, _, domain = copy["email"].partition("@")
            copy["email"] = f"{local}+crm@{domain}".upper()
        elif roll < 0.35:  # a second address of the same person
            copy["email"] = f"{person['first_name'][0].lower()}{person['last_name'].lower()}.{person['entity']}@{rng.choice(_DOMAINS)}"
        elif roll < 0.5:
            copy["email"] = None
    if copy["phone"]:
        roll = rng.random()
        if roll < 0.3:
            number = copy["phone"]
            copy["phone"] = f"0{number[3:7]} {number[7:]}"  # national format, no country code
        elif roll < 0.5:
            copy["phone"] = None
    if copy["birth_date"] and rng.random() < 0.3:
        copy["birth_date"] = None if rng.random() < 0.5 else copy["birth_date"] + timedelta(days=rng.choice((-1, 1, 10, 31)))
    if rng.random() < 0.2:  # moved house
        town = rng.choices(world.towns, cum_weights=world.town_weights)[0]
        copy.update({
            "address_street": f"{rng.randint(1, 300)} {rng.choice(world.street_names).title()} {rng.choice(_STREET_KINDS).title()}",
            "address_city": town.title(), "address_region": world.regions[town].title(),
            "address_postcode": rng.choice(world.postcodes[town]),
        })
    elif rng.random() < 0.2:
        copy["address_street"] = _typo(rng, copy["address_street"])
    for field in ("email", "phone", "birth_date", "address_street", "address_city", "address_postcode"):
        if rng.random() < 0.05:
            copy[field] = None
    return copy


def synthetic_contacts(count: int, *, duplicate_share: float = 0.1, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``count`` contact records; about ``duplicate_share`` of them are extra entries of a person
    already yielded (one to three extra entries per duplicated person)."""
    if not 0.0 <= duplicate_share < 1.0:
        raise ValueError("duplicate_share: must be in [0, 1)")
    rng = random.Random(seed)
    world = _World(rng, count)
    extras = (1, 1, 1, 2, 3)
    # A duplicated person brings mean(extras) extra records; solve share = p·e / (1 + p·e) for p.
    mean_extra = sum(extras) / len(extras)
    duplicated = duplicate_share / (mean_extra * (1.0 - duplicate_share))
    produced = 0
    entity = 0
    while produced < count:
        entity += 1
        person = _person(rng, world, entity)
        extra = rng.choice(extras) if rng.random() < duplicated else 0
        for copy_number in range(extra + 1):
            if produced >= count:
                return
            record = person if copy_number == 0 else _variant(rng, world, person)
            # Unique, but not in generation order (multiplying by an odd constant permutes 64-bit ints).
            produced += 1
            yield dict(record, id=f"{produced * 0x9E3779B97F4A7C15 % 2**64:016x}")


def true_pairs(records: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """The id pairs that stand for the same person, from the records' ``entity`` keys."""
    by_entity: defaultdict[str, list[str]] = defaultdict(list)
    for record in records:
        by_entity[record["entity"]].append(record["id"])
    pairs: set[tuple[str, str]] = set()
    for ids in by_entity.values():
        ids.sort()
        pairs.update((a, b) for k, a in enumerate(ids) for b in ids[k + 1:])
    return pairs
