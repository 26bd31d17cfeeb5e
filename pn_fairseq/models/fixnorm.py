"""FixNorm (Nguyen & Chiang, 2018, "Improving Lexical Choice in Neural Machine Translation";
used with ScaleNorm in Nguyen & Salazar, 2019, "Transformers without Tears"): every word
embedding has the same fixed length.

With ``--fixnorm`` each embedding row is divided by its l2 norm where it is looked up, and
fairseq's embedding scale (``sqrt(d)`` unless ``--no-scale-embedding``) then gives it length
``g = sqrt(d)``; where the output projection is the embedding matrix itself
(``--share-decoder-input-output-embed`` / ``--share-all-embeddings``) the logits use the same
unit rows. This is what the authors' code does (tnq177/transformers_without_tears,
``model.py``: ``F.normalize(self.word_embedding, dim=-1)`` for the inputs, scaled by
``embed_dim ** 0.5``, and for the tied logits). Their uniform(-0.01, 0.01) initialisation is
not copied: after the normalization only each row's direction matters, and fairseq's normal
initialisation draws directions uniformly as well.

The parameter stays the module's ``weight`` (checkpoint keys do not change); padding's row is
zero in fairseq and stays zero (``F.normalize`` divides by ``max(||w||, eps)``).
"""
import torch.nn as nn
import torch.nn.functional as F


def add_fixnorm_args(group):
    group.add_argument("--fixnorm", action="store_true", default=None,
                       help="FixNorm: every word embedding (and the tied output projection) normalized to unit "
                            "length before fairseq's sqrt(d) embedding scale (Nguyen & Salazar, 2019)")


class FixNormEmbedding(nn.Embedding):
    """``nn.Embedding`` whose rows are used at unit l2 length. ``tokens: B x T`` -> ``B x T x C``."""

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> "FixNormEmbedding":
        new = cls(emb.num_embeddings, emb.embedding_dim, padding_idx=emb.padding_idx)
        new.weight = emb.weight
        return new

    def forward(self, tokens):
        return F.embedding(tokens, F.normalize(self.weight, dim=-1), self.padding_idx)


class FixNormLinear(nn.Linear):
    """The tied output projection with unit-length rows: ``x: ... x C`` -> ``... x V``."""

    @classmethod
    def tied_to(cls, weight: nn.Parameter) -> "FixNormLinear":
        new = cls(weight.shape[1], weight.shape[0], bias=False)
        new.weight = weight
        return new

    def forward(self, x):
        return F.linear(x, F.normalize(self.weight, dim=-1))
