"""tdpmmu: an executable model of the Linux KVM x86 TDP MMU and a systematic
concurrency checker that runs it under every relevant interleaving."""

__version__ = "0.1.0"
