"""The fused engine's specialised CPU loops, one file per cell family, each declaring the
configurations it computes (``handles``; ``torch_engine/capability.py`` reads them). Derivation:
docs/derivations/fused_loops.md."""
