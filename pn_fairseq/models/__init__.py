"""The plugin's models: fairseq's Transformer, language model and RoBERTa with every norm
chosen by flag.

- :mod:`.transformer_pn`: the model, its encoder and decoder; :mod:`.layers`: the layers;
- :mod:`.pn_model`: what every model does with its norms (one mixin);
- :mod:`.transformer_lm_pn`, :mod:`.lm_architectures`: the language model and its sizes;
- :mod:`.roberta_pn`, :mod:`.roberta_architectures`: RoBERTa / BERT and its sizes;
- :mod:`.norm_options`: the ``--*-norm`` flags and how they build norms; :mod:`.architectures`:
  one named architecture per table row; :mod:`.deepnorm`, :mod:`.fixnorm`: those variants;
- :mod:`.norm_monitor`: running-statistics checks; :mod:`.help_text`: the ``--help`` section.

May import :mod:`pn_fairseq.norms`, :mod:`pn_fairseq.tasks` and :mod:`pn_fairseq.hooks`; never
checkpoints, evaluation or the tools.
"""
# fairseq before this package's modules: the plugin registers with fairseq the moment fairseq's
# import finishes (pn_fairseq/__init__.py), and that imports them, whole, before this goes on.
import fairseq  # noqa: F401,E402
from . import transformer_pn  # noqa: F401  (registers the model first)
from . import architectures  # noqa: F401,E402
from . import transformer_lm_pn, lm_architectures  # noqa: F401,E402
from . import roberta_pn, roberta_architectures  # noqa: F401,E402
