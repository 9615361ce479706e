"""The fleet report labels the classifier's numbers by what they are."""
from fleet.report import classifier_summary
from fleet.service import classifier_status
from protos import latent_service_pb2 as pb


def test_held_out_accuracy_is_reported_on_the_held_out_rows():
    status = pb.ClassifierStatus(version=3, held_out_accuracy=0.665, trained_rows=3199, held_out_rows=801,
                                 description="analog MLP 32 -> 128 -> 10")
    clf = classifier_status(status)
    assert (clf["trained_rows"], clf["held_out_rows"]) == (3199, 801)
    assert classifier_summary(clf) == ("classifier v3: server-side held-out accuracy 66.5% on 801 held-out rows, "
                                       "trained on 3199 rows (analog MLP 32 -> 128 -> 10)")
