"""Synthetic insured persons: a 身份证号 (GB 11643) built from a real birthplace division, the birth date and a
sequence whose parity is the gender, its check digit computed by python-stdnum; a name; an insurance type.

A person is a pure function of (seed, insured division, index): the same person comes back in every
partition and every year that draws that index, with the same 身份证号, name and birth date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from typing import NamedTuple

from stdnum.cn import ric

from hipgate.exchange.seed.dictionaries import Dictionaries

# Birth dates of the synthetic population (all alive; the seed data's years come after them).
FIRST_BIRTH = dt.date(1930, 1, 1)
LAST_BIRTH = dt.date(2023, 12, 31)
BIRTH_DAYS = (LAST_BIRTH - FIRST_BIRTH).days + 1
FIRST_ORDINAL = FIRST_BIRTH.toordinal()
# Where a person insured in a division was born: 75 % in its prefecture, 10 % elsewhere in the
# province, the rest in another province of the dictionary (migrants).
SAME_PREFECTURE, SAME_PROVINCE = 750, 850

# Surnames weighted as in Guangdong (陈, 李, 黄, 张, 梁 … first), then the national list.
SURNAMES = (
    "陈" * 9 + "李" * 8 + "黄" * 7 + "张" * 6 + "梁" * 5 + "林" * 5 + "刘" * 5 + "吴" * 4 + "罗" * 4 + "何" * 4
    + "郑" * 3 + "王" * 3 + "谢" * 3 + "杨" * 3 + "周" * 3 + "叶" * 3 + "钟" * 3 + "曾" * 3 + "邓" * 3 + "冯" * 2
    + "蔡" * 2 + "朱" * 2 + "赖" * 2 + "许" * 2 + "卢" * 2 + "吕" * 2 + "潘" * 2 + "彭" * 2 + "苏" * 2 + "方" * 2
    + "赵孙徐胡郭马高宋唐韩曹袁田董余杜程魏丁沈姚姜崔谭陆汪范金石廖贾夏韦付白邹孟熊秦邱江尹薛段雷侯龙史陶"
    + "贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧温古麦"
)  # fmt: skip
GIVEN_MALE = "伟强军磊洋勇杰涛明超辉鹏华斌浩俊峰建志文国健宇龙锋波毅坚荣添耀炜晖铭骏"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞婷玲燕丹萍红琳雪慧颖欣怡晶倩佳梅秀凤桂珍翠妍诗"
GIVEN_ANY = "子晓嘉思雨一家紫梓泽俊晨睿宏海永嘉伟春金少志文德智"


class Person(NamedTuple):  # a NamedTuple: made once per visit, so it must be cheap
    psn_no: str
    certno: str
    psn_name: str
    gend: str  # "1" male, "2" female: the parity of the sequence digits
    brdy: dt.date
    insuplc_admdvs: str
    employee: bool  # insured as an employee (310) rather than a resident (390)
    tel: str

    def age_on(self, day: dt.date) -> int:
        return day.year - self.brdy.year - ((day.month, day.day) < (self.brdy.month, self.brdy.day))


def certno(division: str, birth: dt.date, seq: int) -> str:
    """A 身份证号: division (6), birth date (8), sequence (3), check digit (ISO 7064 MOD 11-2, by stdnum)."""
    body = f"{division}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum takes the number with a check digit place


def gend_of(certno_: str) -> str:
    """The gender a 身份证号 states: odd sequence men ("1"), even women ("2")."""
    return "1" if int(certno_[16]) % 2 else "2"


def is_valid_certno(number: str) -> bool:
    """stdnum's check (length, digits, check digit, birth date, birthplace valid in the birth year).
    python-stdnum 2.2 raises KeyError instead of answering False for a number whose province it knows and
    whose county it does not (stdnum.cn.ric.get_birth_place): that is an invalid number too."""
    try:
        return ric.is_valid(number)
    except KeyError:
        return False


@lru_cache(maxsize=4096)
def birthplaces(dicts: Dictionaries, prefecture: str, year: int) -> tuple[str, ...]:
    """The divisions of a prefecture a person born in `year` can carry: its counties and itself, each if
    its code was valid that year (valid_from, from python-stdnum's table)."""
    pool = [d for d in (*dicts.counties(prefecture), dicts.divisions[prefecture]) if d.valid_from <= year]
    if not pool:  # a prefecture made after the birth year: its province's code always was
        pool = [dicts.divisions[dicts.province_of(prefecture)]]
    return tuple(d.code for d in pool)


@lru_cache(maxsize=64)
def _prefectures(dicts: Dictionaries, province: str) -> tuple[str, ...]:
    return tuple(d.code for d in dicts.prefectures(province))


@lru_cache(maxsize=64)
def _other_provinces(dicts: Dictionaries, province: str) -> tuple[str, ...]:
    return tuple(d.code for d in dicts.provinces() if d.code != province)


def _pick(text: str, n: int) -> str:
    return text[n % len(text)]


def person(dicts: Dictionaries, seed: int, insuplc: str, index: int) -> Person:
    """Person `index` insured in division `insuplc` (a prefecture of the dictionary)."""
    d = hashlib.blake2b(f"hipgate-psn/v1|{seed}|{insuplc}|{index}".encode(), digest_size=24).digest()
    day = int.from_bytes(d[0:4], "big") % BIRTH_DAYS
    seq = int.from_bytes(d[4:6], "big") % 1000
    where = int.from_bytes(d[6:8], "big") % 1000
    pick = int.from_bytes(d[8:11], "big")
    s, g1, g2 = int.from_bytes(d[11:13], "big"), int.from_bytes(d[13:15], "big"), int.from_bytes(d[15:17], "big")
    two, emp = d[17] % 100, d[18] % 100
    tel = int.from_bytes(d[19:24], "big")
    brdy = dt.date.fromordinal(FIRST_ORDINAL + day)
    province = dicts.province_of(insuplc)
    if where < SAME_PREFECTURE:
        prefecture = insuplc
    elif where < SAME_PROVINCE:
        prefs = _prefectures(dicts, province)
        prefecture = prefs[pick % len(prefs)]
    else:
        others = _other_provinces(dicts, province)
        prefs = _prefectures(dicts, others[pick % len(others)])
        prefecture = prefs[(pick >> 4) % len(prefs)]
    pool = birthplaces(dicts, prefecture, brdy.year)
    number = certno(pool[(pick >> 8) % len(pool)], brdy, seq)
    gend = gend_of(number)
    given = GIVEN_MALE if gend == "1" else GIVEN_FEMALE
    name = _pick(SURNAMES, s) + _pick(given if g1 % 3 else GIVEN_ANY, g1 // 3)
    if two < 70:  # most given names have two characters
        name += _pick(given, g2)
    age_2024 = 2024 - brdy.year
    employee = age_2024 >= 18 and emp < (70 if age_2024 < 60 else 45)
    mobile = f"1{'3456789'[tel % 7]}{tel // 7 % 10**9:09d}"  # 13x-19x and nine digits
    return Person(f"{insuplc}{index:014d}", number, name, gend, brdy, insuplc, employee, mobile)
