"""Motion generation (JoyVASA stage 1): audio windows -> sampled motion -> de-normalised pose/expression."""
