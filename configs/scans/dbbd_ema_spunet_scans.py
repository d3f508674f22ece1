# DBBD on SpUNet (dbbd_spunet_scans.py) with an EMA teacher: the student
# reads view 1 top-down (G2L), a teacher whose weights follow the
# student's by an exponential moving average reads view 2 bottom-up (L2G),
# with no gradient (MoCo / BYOL style; docs/models.md). Momentum 0.95: the
# pre-training makes about a hundred optimizer steps (8 epochs, 12 a
# epoch), so the teacher averages the student over its last ~20 steps; at
# MoCo's 0.999 it would stay at its first copy. The student's backbone is
# what pretrained= reads.
_base_ = ['./dbbd_spunet_scans.py']

model = dict(ema_momentum=0.95)
