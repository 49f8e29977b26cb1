"""mmcv's CUDA kernels of the ops our detectors run (NMS, batched NMS,
RoIAlign) give the results of its CPU kernels."""
import pytest
import torch
from gpu_common import requires_cuda

pytestmark = requires_cuda
ops = pytest.importorskip('mmcv.ops')


def random_boxes(count, seed):
    """``count`` boxes (x1, y1, x2, y2) in a 320x240 image, many
    overlapping, with distinct scores."""
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * torch.tensor(
        [280., 200.])
    size = torch.rand(count, 2, generator=generator) * 40 + 4
    scores = torch.randperm(count, generator=generator).float() / count
    return torch.cat([corner, corner + size], dim=1), scores


def test_mmcv_is_built_with_cuda_ops():
    built = ops.get_compiling_cuda_version()
    assert built != 'not available', (
        'mmcv was built without its CUDA ops: rerun tools/setup_env.sh on '
        'this machine (or with FORCE_CUDA=1)')
    assert built.split('.')[:2] == torch.version.cuda.split('.')[:2]


def test_nms_matches_cpu():
    boxes, scores = random_boxes(600, seed=0)
    dets, keep = ops.nms(boxes, scores, iou_threshold=0.5)
    cuda_dets, cuda_keep = ops.nms(boxes.cuda(), scores.cuda(), 0.5)
    assert 20 < keep.numel() < 600  # some boxes suppressed, not all
    assert torch.equal(cuda_keep.cpu(), keep)
    torch.testing.assert_close(cuda_dets.cpu(), dets)


def test_batched_nms_matches_cpu():
    boxes, scores = random_boxes(600, seed=1)
    classes = torch.randint(0, 4, (600, ),
                            generator=torch.Generator().manual_seed(2))
    config = dict(type='nms', iou_threshold=0.5)
    dets, keep = ops.batched_nms(boxes, scores, classes, config)
    cuda_dets, cuda_keep = ops.batched_nms(boxes.cuda(), scores.cuda(),
                                           classes.cuda(), config)
    # Per class, boxes of other classes suppress nothing: more survive.
    assert keep.numel() > ops.nms(boxes, scores, 0.5)[1].numel()
    assert torch.equal(cuda_keep.cpu(), keep)
    torch.testing.assert_close(cuda_dets.cpu(), dets)


@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_matches_cpu_forward_and_backward(aligned):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 16, 30, 40, generator=generator)
    boxes, _ = random_boxes(64, seed=4)
    rois = torch.cat([torch.arange(64).remainder(2)[:, None].float(), boxes],
                     dim=1)
    grad = torch.randn(64, 16, 7, 7, generator=generator)

    def forward_backward(device):
        inputs = features.to(device).requires_grad_()
        out = ops.roi_align(inputs, rois.to(device), (7, 7),
                            spatial_scale=0.125, sampling_ratio=2,
                            pool_mode='avg', aligned=aligned)
        out.backward(grad.to(device))
        return out.cpu(), inputs.grad.cpu()

    out, input_grad = forward_backward('cpu')
    cuda_out, cuda_input_grad = forward_backward('cuda')
    assert out.abs().sum() > 0 and input_grad.abs().sum() > 0
    torch.testing.assert_close(cuda_out, out, rtol=1e-5, atol=1e-5)
    # The CUDA backward adds with atomics, in another order.
    torch.testing.assert_close(cuda_input_grad, input_grad, rtol=1e-4,
                               atol=1e-4)
