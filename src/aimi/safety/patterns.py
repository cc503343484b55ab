"""Patterns for the clear cases, in English, Spanish and Chinese: the embedded classifier's
lexical layer, under its model.

A sentence encoder reads meaning, and sometimes misses plain words: "how do I hang myself" sits
close to "how do I hang a mirror". These patterns catch what no benign prompt says: first-person
intent to kill or hurt oneself, a threat to kill someone, a request for a bomb or a nerve agent, a
protected group next to dehumanising words or a call to wipe it out, a request for explicit sex.
Each raises its category to at least the severity given; they never lower what the model says.

Text is matched after :func:`aimi.safety.blocklist.normalise` (NFKC, case folding, invisible
characters removed), so fullwidth letters or zero-width spaces do not hide a word.
"""

from __future__ import annotations

import re

from aimi.safety.api import Severity
from aimi.safety.blocklist import normalise

# Protected groups, as people name them (plural nouns), for the hate patterns.
_GROUPS_EN = (
    r"(?:black|white|gay|trans|transgender|disabled|jewish|muslim|chinese|asian)\s+(?:people|folks|men|women)"
    r"|jews|muslims|blacks|immigrants|migrants|refugees|gays|lesbians|homosexuals|mexicans|arabs|asians|africans"
    r"|roma|gypsies|hindus|sikhs|christians|catholics|women|foreigners|latinos|hispanics|indians|pakistanis"
)
_GROUPS_ES = (
    r"negros|inmigrantes|judíos|musulmanes|gitanos|gays|homosexuales|refugiados|moros|sudacas|chinos"
    r"|mujeres|extranjeros|árabes|latinos|indios|maricones|moros"
)
_GROUPS_ZH = r"黑人|移民|犹太人|穆斯林|同性恋|外地人|难民|残疾人|女人|外国人|回民|黑鬼"
_DEHUMANISING_EN = (
    r"subhuman|sub-human|vermin|parasites?|cockroach(?:es)?|rats|an? infestation|a plague|a disease|a cancer"
    r"|scum|filth|savages|animals|inferior|worthless|not (?:even )?(?:human|people)"
)
_DEHUMANISING_ES = (
    r"infrahumanos|alimañas|parásitos|cucarachas|ratas|plaga|escoria|basura|animales|inferiores|enfermedad"
)
_DEHUMANISING_ZH = r"畜生|寄生虫|害虫|老鼠|瘟疫|毒瘤|人渣|垃圾|低人一等|劣等|动物|废物"
_WIPE_OUT_EN = (
    r"exterminat\w*|wipe[ds]? (?:\w+ )?out|wiped (?:\w+ )?off|gas(?:sed)?|lynch\w*|eradicat\w*"
    r"|kill (?:all|every)|shot on sight|burn (?:\w+ )?out"
)
_WIPE_OUT_ES = r"exterminar|cámaras? de gas|matad|matar a todos|borrar|eliminar a todos|linchar"
_WIPE_OUT_ZH = r"消灭|毒死|杀光|抹掉|清除|赶尽杀绝|斩草除根"
_HISTORY = r"holocaust|nazi|histor|genocide|propaganda|holocausto|historia|genocidio|大屠杀|历史|纳粹|种族灭绝"

_PERSON_EN = r"(?:you|him|her|them|everyone|everybody|my \w+|your \w+|his \w+|her \w+|their \w+|every \w+)"
_I_WILL_EN = r"\bi(?:'m| am)? (?:going to|gonna|will|'ll|want to|wanna|am about to|plan to)"

PATTERNS: dict[str, list[tuple[Severity, re.Pattern[str]]]] = {
    "self_harm": [
        (
            Severity.HIGH,
            re.compile(
                r"\b(?:how|best|easiest|painless|quickest|fastest|surest|way|ways|method)\b.{0,40}"
                r"\b(?:kill|hang|drown|poison|shoot) myself\b"
                r"|\b(?:how|way|ways|method)\b.{0,30}\b(?:commit suicide|end my (?:own )?life|suicide)\b"
                r"|\bnoose\b.{0,40}\bmyself\b|\bslit my wrists?\b|\bcut my wrists?\b.{0,40}\b(?:die|bleed out)\b"
                r"|\b(?:i'm|i am|i will|i'll|going to) (?:overdose|od)\b|\bbleed out\b.{0,20}$"
                r"|\bmake sure i (?:die|don't wake up)\b"
            ),
        ),
        (
            Severity.MEDIUM,
            re.compile(
                _I_WILL_EN + r" (?:kill myself|end (?:it all|my life|everything)|commit suicide|disappear forever)"
                r"|\b(?:want|wanna|going|need|deserve|like) to (?:cut|hurt|harm|burn|punish|starve|kill) myself\b"
                r"|\bi keep (?:cutting|hurting|burning|harming|starving) myself\b|\bi (?:cut|burn|hurt|starve) myself\b"
                r"|\b(?:thinking|think) (?:about|of) (?:killing myself|ending (?:it all|my life)|suicide)\b"
                r"|\bstarv(?:e|ing) (?:myself|my body)\b|\bsuicidal\b|\bi want to die\b"
                r"|\bbetter off (?:if i were )?dead\b"
                r"|\bcutting my (?:arms|wrists|thighs|legs)\b|\bmake myself (?:throw up|vomit)\b"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(
                r"\b(?:cómo|forma|manera|método)\b.{0,40}\b(?:suicidarme|matarme|ahorcarme|quitarme la vida)\b"
                r"|\bpara (?:morir|desangrarme)\b|\bnudo de horca\b"
            ),
        ),
        (
            Severity.MEDIUM,
            re.compile(
                r"\b(?:quiero|voy a|pienso en|necesito)\b.{0,20}"
                r"\b(?:suicidarme|matarme|morirme|morir|ahorcarme|cortarme"
                r"|hacerme daño|acabar con todo|quitarme la vida)\b"
                r"|\bme sigo cortando\b|\bme corto\b|\bcastigar mi cuerpo\b"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(
                r"(?:怎么|怎样|如何|方法|方式).{0,10}(?:自杀|上吊|割腕)|自杀方法|上吊|(?:流血|睡梦中)(?:而)?死"
                r"|把.{0,6}全吃了"
            ),
        ),
        (
            Severity.MEDIUM,
            re.compile(
                r"我(?:想|要|打算|在想).{0,8}(?:自杀|死|结束(?:这一切|生命|自己)|杀了自己|伤害自己|割自己)"
                r"|割自己|伤害自己|惩罚自己的身体|杀了自己"
            ),
        ),
    ],
    "violence": [
        (
            Severity.HIGH,
            re.compile(
                _I_WILL_EN
                + r" (?:kill|murder|stab|shoot|strangle|slit|behead|poison|run over) "
                + _PERSON_EN
                + r"|\b(?:nerve agent|sarin|ricin|pipe bomb|nail bomb|car bomb|poison gas)\b"
                r"|\b(?:make|build|assemble)\b.{0,10}\bbomb\b|\b(?:shoot|kill|stab) (?:every|all the|as many)\b"
                r"|\bhow (?:do i|to|can i|would i)\b.{0,10}\b(?:poison|murder|kill|stab|strangle|torture) "
                r"(?:someone|somebody|a person|people|my|him|her|them|a man|a woman)\b"
                r"|\bplan to (?:murder|kill)\b|\btorture\b.{0,60}\b(?:fingernails|burning|skin|bones|alive)\b"
                r"|\bbody count\b|\b(?:school|mass) shoot(?:er|ing)s?\b.{0,60}\b(?:hero|praise|beat|record)\b"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(
                r"\bvoy a (?:matar|apuñalar|degollar|disparar|envenenar|asesinar|atropellar)\b"
                r"|\bcómo (?:envenenar|matar|asesinar|torturar|apuñalar)\b|\bbomba casera\b|\bgas que mate\b"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(r"我.{0,4}(?:要|会|想)(?:杀了|杀死|捅死|毒死|撞死|砍死|割断)|(?:制造|做|造)炸弹|毒气|下毒"),
        ),
        (
            Severity.MEDIUM,
            re.compile(
                _I_WILL_EN
                + r" (?:beat|hurt|break|smash|punch|hit) "
                + _PERSON_EN
                + r"|\b(?:break|smash) (?:their|his|her|your) (?:jaw|face|legs|arms?|skull)\b"
                r"|\bvoy a (?:darle una paliza|reventar|romper)\b|我要把.{0,6}打|打断.{0,4}(?:腿|下巴)|砸烂"
            ),
        ),
    ],
    "hate": [
        (
            Severity.HIGH,
            re.compile(
                rf"(?:\b(?:{_WIPE_OUT_EN})\b.{{0,40}}\b(?:{_GROUPS_EN})\b|\b(?:{_GROUPS_EN})\b.{{0,40}}\b(?:{_WIPE_OUT_EN})\b)"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(
                rf"(?:\b(?:{_WIPE_OUT_ES})\b.{{0,40}}\b(?:{_GROUPS_ES})\b|\b(?:{_GROUPS_ES})\b.{{0,40}}\b(?:{_WIPE_OUT_ES})\b)"
            ),
        ),
        (
            Severity.HIGH,
            re.compile(rf"(?:{_WIPE_OUT_ZH}).{{0,20}}(?:{_GROUPS_ZH})|(?:{_GROUPS_ZH}).{{0,20}}(?:{_WIPE_OUT_ZH})"),
        ),
        (
            Severity.MEDIUM,
            re.compile(rf"\b(?:{_GROUPS_EN})\b.{{0,30}}\b(?:are|is|as|like)\b.{{0,20}}\b(?:{_DEHUMANISING_EN})\b"),
        ),
        (
            Severity.MEDIUM,
            re.compile(rf"\b(?:{_GROUPS_ES})\b.{{0,30}}\b(?:son|como)\b.{{0,20}}\b(?:{_DEHUMANISING_ES})\b"),
        ),
        (
            Severity.MEDIUM,
            re.compile(rf"(?:{_GROUPS_ZH}).{{0,12}}(?:都是|是|就是|天生).{{0,12}}(?:{_DEHUMANISING_ZH})"),
        ),
    ],
    "sexual": [
        (
            Severity.HIGH,
            re.compile(
                r"\b(?:graphic|explicit|hardcore|filthy)\b.{0,40}\b(?:sex|porn\w*|intercourse|penetration|genitals|orgy|fuck\w*)\b"
                r"|\b(?:porn\w*)\b.{0,40}\b(?:scene|story|explicit|graphic)\b|\borgy\b|\bmasturbat\w*\b|\bmake me cum\b"
                r"|\b(?:escena|historia)\b.{0,20}\bporno\b|\bexplícit\w*\b.{0,40}\b(?:sexo|follan|penetración|genitales)\b|\borgía\b"
                r"|露骨|色情|口交|群交|做爱"
            ),
        ),
        (
            Severity.MEDIUM,
            re.compile(
                r"\b(?:send|show)\b.{0,20}\b(?:nudes?|nude (?:pictures|photos|pics)|naked (?:pictures|photos|pics))\b"
                r"|\b(?:have|having) sex with (?:you|me)\b|\bcybersex\b|\btalk dirty\b|\bdirtiest sexual\b"
                r"|\berotic\w*\b"
                r"|\bdescribe\b.{0,30}\b(?:naked|nude) body\b|\bsexual fantas\w*\b|\bsexy story\b"
                r"|\bfotos\b.{0,20}\bdesnud\w*\b|\btener sexo contigo\b|\bfantasía sexual\b|\berótic\w*\b"
                r"|\bcuerpo desnudo\b"
                r"|裸照|上床|性幻想|情色|赤裸|香艳|性交"
            ),
        ),
    ],
}
# Prompts about a harm, not doing it: history, prevention, help for someone else.
_ABOUT = re.compile(
    _HISTORY + r"|prevention|hotline|helpline|warning signs|how (?:can|do) i help|support a friend|report a hate crime"
    r"|prevención|señales de alarma|cómo ayudo|预防|热线|预警信号|怎么帮"
)


def match(text: str) -> dict[str, Severity]:
    """The severities the patterns find in ``text``, per category (absent: none)."""
    folded = normalise(text)
    if _ABOUT.search(folded):
        return {}
    found: dict[str, Severity] = {}
    for category, patterns in PATTERNS.items():
        for severity, pattern in patterns:
            if severity > found.get(category, Severity.SAFE) and pattern.search(folded):
                found[category] = severity
                if category == "hate" and severity is Severity.HIGH:
                    found["violence"] = max(found.get("violence", Severity.SAFE), Severity.HIGH)
    return found
