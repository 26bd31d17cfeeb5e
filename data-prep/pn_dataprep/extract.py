"""Text out of the raw IWSLT/WMT files, as the grep/sed lines of the fairseq recipes do it."""
import re

# examples/translation/prepare-iwslt14.sh, training files:
#   grep -v '<url>' | grep -v '<talkid>' | grep -v '<keywords>' |
#   sed -e 's/<title>//g' | sed -e 's/<\/title>//g' | sed -e 's/<description>//g' | sed -e 's/<\/description>//g'
# so title and description texts stay in as training sentences, as in every fairseq IWSLT14 copy.
IWSLT_DROP_LINES_WITH = ("<url>", "<talkid>", "<keywords>")
IWSLT_STRIP = ("<title>", "</title>", "<description>", "</description>")

# sed's \s (C locale): ASCII whitespace only.
_SED_SPACE = "[ \t\n\x0b\x0c\r]"
_SEG_OPEN = re.compile(f'<seg id="[0-9]*">{_SED_SPACE}*')
_SEG_CLOSE = re.compile(f"{_SED_SPACE}*</seg>{_SED_SPACE}*")
# sacrebleu's extraction of the fake-SGML WMT test sets (sacrebleu/dataset/fake_sgml.py).
_SACREBLEU_SEG = re.compile(r"<seg.*?>(.*)</seg>.*?")
_WHITESPACE = re.compile(r"\s+")


def iwslt_train_lines(lines):
    for line in lines:
        if any(tag in line for tag in IWSLT_DROP_LINES_WITH):
            continue
        for tag in IWSLT_STRIP:
            line = line.replace(tag, "")
        yield line


def seg_lines(lines, straight_apostrophe=True):
    """The recipes' valid/test extraction from xml/sgm files.

    ``grep '<seg id' | sed -e 's/<seg id="[0-9]*">\\s*//g' | sed -e 's/\\s*<\\/seg>\\s*//g' |
    sed -e "s/\\’/\\'/g"``; the last sed (curly to straight apostrophe) is optional.
    """
    for line in lines:
        if "<seg id" not in line:
            continue
        line = _SEG_CLOSE.sub("", _SEG_OPEN.sub("", line))
        if straight_apostrophe:
            line = line.replace("\u2019", "'")
        yield line


def raw_seg_lines(lines):
    """Untokenized segments exactly as sacrebleu extracts them, for detokenized BLEU references."""
    for line in lines:
        if line.startswith("<seg "):
            yield _WHITESPACE.sub(" ", _SACREBLEU_SEG.sub(r"\1", line).strip())

