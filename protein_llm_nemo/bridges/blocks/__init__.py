"""Building blocks of the bridges: the layer factory (torch and megatron), attention, resamplers, the gated
cross-attention block, and how protein inputs meet the token sequence. Not scanned for bridges."""
