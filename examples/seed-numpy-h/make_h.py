# The numpy side of this example: H for 10 classes, saved as .npy. (H = I makes InfogainLoss equal to
# SoftmaxWithLoss; put your own costs or class weights here.) The result, H.npy, ships with the example.
import numpy as np

L = 10
H = np.eye(L, dtype='f4')
np.save('H.npy', H)
