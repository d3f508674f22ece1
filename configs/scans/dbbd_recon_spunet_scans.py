# dbbd_masked_spunet_scans.py plus MSC's reconstruction term: a linear head
# reads the SpUNet's per-point features and predicts the input features
# (colour, normals, intensity) of the masked points (MSE on those points,
# both readings). The contrastive losses alone let the features drop the
# appearance a linear probe on the raw input reads (probe below the raw
# features); reconstructing it from the surroundings keeps it in them.
_base_ = ['./dbbd_masked_spunet_scans.py']

model = dict(reconstruct=True, recon_weight=1.0)
