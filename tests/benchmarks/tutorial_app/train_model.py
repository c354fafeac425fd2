# ruff: noqa
# The tutorial's training code (shared/seed, "1. Creating a classification model"), as written except for the
# file paths, which come from the command line (CHANGED): python train_model.py DATASET_CSV PICKLE_OUT
import pickle
import sys  # CHANGED (added): for the paths
import pandas as pd
import numpy as np
from sklearn.svm import SVC
from sklearn.model_selection import train_test_split

# Loading the data and separating target from the features
df = pd.read_csv(sys.argv[1], encoding='unicode_escape')  # CHANGED: path from the command line
y = df['Class']
X = df.drop('Class', axis=1)

# Splitting the data to training and test sets
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=17)

# Fitting a Support Vector Classifier with a linear kernel
svm = SVC(kernel='linear')
svm.fit(X_train, y_train)
preds = svm.predict(X_test)
accuracy = (preds==y_test).mean()

print(f'Prediction accuracy on test data: {"%.3f"%accuracy}')

with open(sys.argv[2], 'wb') as file:  # CHANGED: path from the command line
    pickle.dump(svm, file)
