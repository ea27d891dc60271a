"""Caption templates of the sample dataset: varied sentences with synonyms at three levels.

Level 3 (phase) sentences reuse the vocabulary of the CAMMA Cholec80 zero-shot prompts, so those
prompts work on the sample; level 2 (step) sentences name the instrument and its target; level 1
(task) sentences name the motion. Each caption is drawn from several templates and synonym lists,
so a model has to read the words rather than match a fixed string.
"""
from __future__ import annotations

import numpy as np

PHASES = ("Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
          "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction")
TOOLS = ("Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag")

# The CAMMA prompts (label 1..7), for reference and for tests of the vocabulary.
CHOLEC80_PROMPTS = (
    "In preparation phase I insert trocars to patient abdomen cavity",
    "In calot triangle dissection phase I use grasper to hold gallbladder and use hook to expose the hepatic "
    "triangle area and cystic duct and cystic artery",
    "In clip and cut phase I use clipper to clip the cystic duct and artery then use scissor to cut them",
    "In dissection phase I use the hook to dissect the connective tissue between gallbladder and liver",
    "In packaging phase I put the gallbladder into the specimen bag",
    "In clean and coagulation phase I use suction and irrigation to clear the surgical field and coagulate "
    "bleeding vessels",
    "In retraction phase I grasp the specimen bag and remove it from trocar",
)

PHASE_TEMPLATES = {
    "Preparation": [
        "In the preparation phase the surgeon {insert} trocars into the patient's {abdomen}.",
        "The surgeon {insert} the trocars through the abdominal wall to prepare the {abdomen}.",
        "Preparation: trocars are {inserted} and the {abdomen} is inspected.",
        "During preparation the ports are {inserted} into the {abdomen} before dissection.",
    ],
    "CalotTriangleDissection": [
        "In the calot triangle dissection phase the surgeon holds the gallbladder with a grasper and uses the hook "
        "to expose the {triangle}.",
        "The surgeon dissects calot's triangle, exposing the cystic duct and cystic artery.",
        "Calot triangle dissection: the {triangle} is opened to show the cystic duct and artery.",
        "The hepatocystic triangle is dissected so that the cystic duct and cystic artery become visible.",
    ],
    "ClippingCutting": [
        "In the clip and cut phase the surgeon {clips} the cystic duct and artery and then {cuts} them.",
        "The surgeon places clips on the cystic duct and artery and divides them with scissors.",
        "Clipping and cutting: the cystic structures are {clipped} and then {cut}.",
        "The cystic duct is {clipped} with the clipper before it is {cut} with the scissors.",
    ],
    "GallbladderDissection": [
        "In the dissection phase the surgeon uses the hook to dissect the connective tissue between gallbladder "
        "and liver.",
        "The gallbladder is {detached} from the liver bed with the hook.",
        "Gallbladder dissection: the surgeon {detaches} the gallbladder from the liver along the connective tissue.",
        "The surgeon separates the gallbladder from the {liverbed} using the hook.",
    ],
    "GallbladderPackaging": [
        "In the packaging phase the surgeon puts the gallbladder into the specimen bag.",
        "The gallbladder is placed into the {bag}.",
        "Packaging: the surgeon {packs} the gallbladder inside the {bag}.",
        "The surgeon {packs} the detached gallbladder into a {bag}.",
    ],
    "CleaningCoagulation": [
        "In the clean and coagulation phase the surgeon uses suction and irrigation to clear the surgical field and "
        "coagulate bleeding vessels.",
        "The surgeon irrigates and aspirates the {field} and coagulates bleeding points.",
        "Cleaning and coagulation: the {field} is washed with irrigation and the bleeding is coagulated.",
        "The liver bed is irrigated, suctioned and coagulated to stop bleeding vessels.",
    ],
    "GallbladderRetraction": [
        "In the retraction phase the surgeon grasps the specimen bag and removes it from the trocar.",
        "The {bag} is pulled out through the trocar.",
        "Retraction: the surgeon {extracts} the {bag} through the port.",
        "The surgeon grasps the {bag} and {extracts} it through the trocar.",
    ],
}

SYNONYMS = {
    "insert": ["inserts", "places", "introduces"],
    "inserted": ["inserted", "placed", "introduced"],
    "abdomen": ["abdomen cavity", "abdominal cavity", "abdomen", "peritoneal cavity"],
    "triangle": ["hepatic triangle area", "triangle of calot", "hepatocystic triangle", "calot triangle area"],
    "clips": ["clips", "clamps", "occludes with clips"],
    "clipped": ["clipped", "clamped", "secured with clips"],
    "cuts": ["cuts", "divides", "transects"],
    "cut": ["cut", "divided", "transected"],
    "detached": ["detached", "dissected", "freed", "separated"],
    "detaches": ["detaches", "dissects", "frees", "separates"],
    "liverbed": ["liver bed", "liver", "hepatic bed"],
    "bag": ["specimen bag", "retrieval bag", "endobag", "extraction bag"],
    "packs": ["puts", "places", "packs", "loads"],
    "field": ["surgical field", "operative field", "liver bed"],
    "extracts": ["removes", "extracts", "pulls out", "withdraws"],
}

TOOL_WORDS = {
    "Grasper": ["grasper", "grasping forceps", "atraumatic grasper"],
    "Bipolar": ["bipolar forceps", "bipolar", "bipolar grasper"],
    "Hook": ["hook", "electrocautery hook", "monopolar hook"],
    "Scissors": ["scissors", "scissor", "laparoscopic scissors"],
    "Clipper": ["clipper", "clip applier", "clip applicator"],
    "Irrigator": ["irrigator", "suction irrigation device", "suction irrigator"],
    "SpecimenBag": ["specimen bag", "retrieval bag", "endobag"],
}

# Steps (level 2): phase -> list of (step key, instrument, target words, allowed tasks).
STEPS = {
    "Preparation": [("expose", "Grasper", ["the gallbladder fundus", "the fundus", "the liver edge"],
                     ["insert", "retract", "hold"])],
    "CalotTriangleDissection": [
        ("hold", "Grasper", ["the gallbladder", "the gallbladder neck", "the infundibulum"], ["retract", "hold"]),
        ("expose", "Hook", ["the cystic duct", "the cystic artery", "the peritoneum over the triangle"],
         ["dissect", "coagulate"])],
    "ClippingCutting": [
        ("clip", "Clipper", ["the cystic duct", "the cystic artery"], ["clip"]),
        ("cut", "Scissors", ["the cystic duct", "the cystic artery", "the clipped duct"], ["cut"])],
    "GallbladderDissection": [
        ("dissect", "Hook", ["the connective tissue", "the gallbladder bed", "the serosa"], ["dissect", "coagulate"]),
        ("retract", "Grasper", ["the gallbladder", "the gallbladder body"], ["retract", "hold"])],
    "GallbladderPackaging": [
        ("bag", "SpecimenBag", ["the specimen bag", "the bag opening"], ["insert", "hold"]),
        ("pack", "Grasper", ["the gallbladder", "the specimen"], ["pack", "hold"])],
    "CleaningCoagulation": [
        ("irrigate", "Irrigator", ["the liver bed", "the surgical field", "the subhepatic space"],
         ["irrigate", "aspirate"]),
        ("coagulate", "Bipolar", ["bleeding vessels", "the liver bed", "a bleeding point"], ["coagulate"])],
    "GallbladderRetraction": [("extract", "Grasper", ["the specimen bag", "the bag"], ["retract", "hold"])],
}

STEP_TEMPLATES = [
    "The surgeon uses the {tool} to {verb} {target}.",
    "Using the {tool}, the surgeon works on {target}.",
    "{target_cap} is handled with the {tool}.",
    "The {tool} is used on {target}.",
    "The surgeon brings in the {tool} to {verb} {target}.",
]
STEP_VERBS = {"expose": ["expose", "present", "lift"], "hold": ["hold", "grasp", "steady"],
              "clip": ["clip", "clamp"], "cut": ["cut", "divide"], "dissect": ["dissect", "free"],
              "retract": ["retract", "pull on"], "bag": ["open", "deploy"], "pack": ["pack", "move"],
              "irrigate": ["wash", "clean"], "coagulate": ["coagulate", "seal"], "extract": ["remove", "extract"]}

TASK_PHRASES = {
    "insert": ["pushes the {tool} in from the edge of the view", "advances the {tool} into the field",
               "moves the {tool} inward"],
    "retract": ["pulls {target} outward with the {tool}", "retracts {target} with the {tool}",
                "draws the {tool} back toward the port"],
    "hold": ["keeps the {tool} still on {target}", "holds {target} steady with the {tool}",
             "maintains traction with the {tool}"],
    "dissect": ["dissects {target} with short strokes of the {tool}", "makes small back and forth movements with "
                "the {tool}", "teases {target} apart with the {tool}"],
    "coagulate": ["coagulates {target} with bursts of energy from the {tool}", "cauterizes {target} with the "
                  "{tool}", "applies current with the {tool} in brief flashes"],
    "clip": ["closes the jaws of the {tool} to fire a clip on {target}", "fires a clip across {target}",
             "applies a clip to {target} with the {tool}"],
    "cut": ["snips {target} with the {tool}", "opens and closes the {tool} to cut {target}",
            "divides {target} with quick cuts of the {tool}"],
    "irrigate": ["sprays a stream of saline from the {tool}", "irrigates {target} with the {tool}",
                 "washes {target} with a jet of fluid from the {tool}"],
    "aspirate": ["suctions fluid from {target} with the {tool}", "aspirates the pooled fluid with the {tool}",
                 "sweeps the {tool} over the fluid to suction it"],
    "pack": ["pushes the gallbladder toward the bag with the {tool}", "moves the specimen into the bag with the "
             "{tool}", "guides the gallbladder into the bag opening with the {tool}"],
}
TASK_STARTS = ["The surgeon {p}.", "Now the surgeon {p}.", "Here the surgeon {p}.", "The surgeon carefully {p}."]

RAW_FILLERS = ["so", "okay so", "now", "alright", "and here", "so now we"]
NON_DESCRIPTIVE = ["Thanks for watching, please subscribe for more videos.", "Let me know in the comments what "
                   "you think.", "This video is part of our teaching series."]
NON_SURGICAL = ["The patient was positioned supine under general anaesthesia.", "Our department performs many "
                "of these cases every year.", "The operating room team was briefed before the case."]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _fill(template: str, rng: np.random.Generator, **slots) -> str:
    values = {k: _pick(rng, v) for k, v in SYNONYMS.items()}
    values.update(slots)
    return template.format(**values)


def phase_caption(phase: str, rng: np.random.Generator) -> str:
    """A level-3 sentence for ``phase``."""
    return _fill(_pick(rng, PHASE_TEMPLATES[phase]), rng)


def step_caption(step: str, tool: str, target: str, rng: np.random.Generator) -> str:
    """A level-2 sentence: the instrument and its target."""
    text = _pick(rng, STEP_TEMPLATES).format(tool=_pick(rng, TOOL_WORDS[tool]), verb=_pick(rng, STEP_VERBS[step]),
                                             target=target, target_cap=target[0].upper() + target[1:])
    return text


def task_caption(task: str, tool: str, target: str, rng: np.random.Generator) -> str:
    """A level-1 sentence: the motion."""
    phrase = _pick(rng, TASK_PHRASES[task]).format(tool=_pick(rng, TOOL_WORDS[tool]), target=target)
    return _pick(rng, TASK_STARTS).format(p=phrase)


def raw_narration(caption: str, rng: np.random.Generator) -> str:
    """A looser spoken-style version of a caption (the ``raw_narration`` column)."""
    body = caption.replace("The surgeon ", "").rstrip(".")
    body = body[0].lower() + body[1:]
    return f"{_pick(rng, RAW_FILLERS)} {body}"
