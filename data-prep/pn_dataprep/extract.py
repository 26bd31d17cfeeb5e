"""Text out of the raw IWSLT/WMT files, as the grep/sed lines of the fairseq recipes do it, and
the already tokenized language-modeling files (PTB, WikiText) out of their archives, unchanged."""
import codecs
import contextlib
import re
import zipfile
import zlib

from pn_common.atomic import atomic_output
from .textio import DataPrepError

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




def copy_lm_text(out, path, member=None, chunk=1 << 20):
    """Copy ``path`` (or the ``member`` of the zip archive ``path``) byte for byte to ``out``.

    The language-modeling corpora come tokenized (PTB lowercased with ``<unk>``, WikiText with
    ``@-@`` and ``<unk>``) and fairseq-preprocess reads them as they are, so nothing is changed.
    Checked on the way, so that a damaged file stops here in one line rather than in a traceback
    of fairseq-preprocess: UTF-8 (the line of the first bad byte is named) and not empty; a zip
    member also by its CRC (``zipfile``).
    """
    where = f"{path}:{member}" if member else str(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = lines = 0
    try:
        with contextlib.ExitStack() as stack:
            if member is None:
                src = stack.enter_context(open(path, "rb"))
            else:
                src = stack.enter_context(stack.enter_context(zipfile.ZipFile(path)).open(member))
            dst = stack.enter_context(open(stack.enter_context(atomic_output(out)), "wb"))
            for block in iter(lambda: src.read(chunk), b""):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as err:
                    line = lines + block.count(b"\n", 0, err.start) + 1
                    raise DataPrepError(f"{where} is not UTF-8 text (line {line:,}): a damaged or wrong file; "
                                        "replace it with the one the recipe downloads") from None
                dst.write(block)
                size += len(block)
                lines += block.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise DataPrepError(f"{where} ends inside a UTF-8 character: a truncated file; replace it with the "
                                    "one the recipe downloads") from None
            if size == 0:
                raise DataPrepError(f"{where} is empty: a truncated or wrong file; replace it with the one the "
                                    "recipe downloads")
    except FileNotFoundError:
        raise DataPrepError(f"missing input file {path}") from None
    except KeyError:
        raise DataPrepError(f"{path} has no {member} (is it the archive the recipe downloads?)") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        # BadZipFile: no zip directory (truncated download) or a bad CRC; EOFError: a member cut
        # short; zlib.error: damaged compressed data.
        raise DataPrepError(f"could not unpack {where} ({err or 'unexpected end of data'}): a truncated or "
                            "corrupted archive; replace it with a complete one") from None
    return size
