"""Monthly cost of the Terraform deployment at a stated traffic, shown with its arithmetic.

GPU node prices and the per-image compute cost come from Cascade's own cost model
(``cascade.cost.compute_dollars`` and ``Settings.device_prices_per_hour``, whose GPU entries
are the on-demand prices of the matching EC2 ``xlarge`` instances); the managed services use
AWS list prices (us-east-1, on-demand, listed below). The README's "Cost" section is this
script's output; tests/infra checks that they agree.

    .venv/bin/python infra/cost_estimate.py            # print the markdown
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cascade.config import Settings
from cascade.cost import compute_dollars

HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30

# AWS list prices, us-east-1, on-demand (USD). Check the pricing pages before you budget.
AWS = {
    "eks_cluster_hour": 0.10,
    "nat_gateway_hour": 0.045,
    "nat_gb": 0.045,
    "m7i.large_hour": 0.1008,
    "m7i.xlarge_hour": 0.2016,
    "cache.t4g.medium_hour": 0.065,
    "cache.r7g.large_hour": 0.219,
    "db.t4g.medium_hour": 0.065,  # single-AZ; Multi-AZ bills two
    "db.r6g.xlarge_hour": 0.45,
    "rds_gp3_gb_month": 0.115,  # single-AZ; Multi-AZ bills two
    "ebs_gp3_gb_month": 0.08,
    "s3_standard_gb_month": 0.023,
    "s3_put_per_1000": 0.005,
    "s3_get_per_1000": 0.0004,
    "secret_month": 0.40,
    "kms_key_month": 1.00,
    "logs_ingest_gb": 0.50,
}


@dataclass(frozen=True)
class Traffic:
    """What the deployment is sized for; the rates are assumptions, stated, to be replaced by
    `cascade bench` results and your own traffic."""

    images_per_day: float
    stage2_fraction: float = 0.118  # 10% escalated + 2% audit of the other 90%
    human_fraction: float = 0.033  # (1% escalated to humans + 2% audit) x 1.1 double labels
    stage1_images_per_s: float = 400.0  # per T4 worker (decode-bound on 4 vCPUs)
    stage2_images_per_s: float = 150.0  # per L4 worker (EfficientNet-V2)
    target_utilisation: float = 0.6  # KEDA keeps ~40% headroom for bursts
    image_kb: float = 150.0
    reads_per_image: float = 1.15  # stage 1, stage 2 for some, review for a few


@dataclass(frozen=True)
class Deployment:
    """The sizes in examples/<name>.tfvars."""

    name: str
    traffic: Traffic
    system_nodes: int
    system_type: str
    gpu_min: tuple[int, int]  # stage1, stage2 node-group min_size
    nat_gateways: int
    nat_gb: float
    redis_type: str
    redis_nodes: int
    db_type: str
    db_storage_gb: int
    prometheus_gb: int
    logs_gb: float


SMALL = Deployment(
    "small", Traffic(1_000_000), 2, "m7i.large", (1, 1), 1, 100, "cache.t4g.medium", 2,
    "db.t4g.medium", 50, 50, 20,
)  # fmt: skip
LARGE = Deployment(
    "large", Traffic(50_000_000), 3, "m7i.xlarge", (2, 2), 3, 1000, "cache.r7g.large", 3,
    "db.r6g.xlarge", 200, 200, 200,
)  # fmt: skip


def gpu_nodes(rate: float, per_node: float, utilisation: float, minimum: int) -> float:
    """Average GPU nodes over the day: the load at the target utilisation, never below min."""
    return max(float(minimum), rate / (per_node * utilisation))


def line_items(d: Deployment, settings: Settings) -> list[tuple[str, str, float]]:
    """(item, arithmetic, $/month) for one deployment."""
    t, h = d.traffic, HOURS_PER_MONTH
    rate = t.images_per_day / 86_400
    n1 = gpu_nodes(rate, t.stage1_images_per_s, t.target_utilisation, d.gpu_min[0])
    n2 = gpu_nodes(
        rate * t.stage2_fraction, t.stage2_images_per_s, t.target_utilisation, d.gpu_min[1]
    )
    t4, l4 = settings.device_price("t4"), settings.device_price("l4")
    node_month = compute_dollars(3600 * h, 1.0)  # one device-month at $1/h
    images = t.images_per_day * DAYS_PER_MONTH
    stored_gb = t.images_per_day * t.image_kb / 1e6 * 30  # hot 30 days, then STANDARD_IA
    ebs_gb = d.system_nodes * 50 + math.ceil(n1 + n2) * 100 + d.prometheus_gb + 10
    return [
        ("EKS control plane", f"{AWS['eks_cluster_hour']} x {h} h", AWS["eks_cluster_hour"] * h),
        ("System nodes", f"{d.system_nodes} x {d.system_type} {AWS[d.system_type + '_hour']} x {h} h",
         d.system_nodes * AWS[d.system_type + "_hour"] * h),
        ("Stage-1 GPU (g4dn.xlarge, t4)", f"{n1:.2f} nodes x {t4} x {h} h", n1 * t4 * node_month),
        ("Stage-2 GPU (g6.xlarge, l4)", f"{n2:.2f} nodes x {l4} x {h} h", n2 * l4 * node_month),
        ("NAT gateways", f"{d.nat_gateways} x {AWS['nat_gateway_hour']} x {h} h + {d.nat_gb:g} GB x {AWS['nat_gb']}",
         d.nat_gateways * AWS["nat_gateway_hour"] * h + d.nat_gb * AWS["nat_gb"]),
        ("ElastiCache Redis", f"{d.redis_nodes} x {d.redis_type} {AWS[d.redis_type + '_hour']} x {h} h",
         d.redis_nodes * AWS[d.redis_type + "_hour"] * h),
        ("RDS PostgreSQL Multi-AZ", f"2 x {d.db_type} {AWS[d.db_type + '_hour']} x {h} h + 2 x {d.db_storage_gb} GB x {AWS['rds_gp3_gb_month']}",
         2 * AWS[d.db_type + "_hour"] * h + 2 * d.db_storage_gb * AWS["rds_gp3_gb_month"]),
        ("S3 storage (30 days hot)", f"{stored_gb:,.0f} GB x {AWS['s3_standard_gb_month']}",
         stored_gb * AWS["s3_standard_gb_month"]),
        ("S3 requests", f"{images / 1e6:,.0f}M PUT x {AWS['s3_put_per_1000']}/1k + {images * t.reads_per_image / 1e6:,.1f}M GET x {AWS['s3_get_per_1000']}/1k",
         images / 1000 * AWS["s3_put_per_1000"] + images * t.reads_per_image / 1000 * AWS["s3_get_per_1000"]),
        ("EBS (nodes, Prometheus, Grafana)", f"{ebs_gb} GB x {AWS['ebs_gp3_gb_month']}", ebs_gb * AWS["ebs_gp3_gb_month"]),
        ("CloudWatch Logs", f"{d.logs_gb:g} GB x {AWS['logs_ingest_gb']}", d.logs_gb * AWS["logs_ingest_gb"]),
        ("Secrets Manager + KMS", f"3 x {AWS['secret_month']} + {AWS['kms_key_month']}",
         3 * AWS["secret_month"] + AWS["kms_key_month"]),
    ]  # fmt: skip


def ledger_per_image(t: Traffic, settings: Settings) -> dict[str, float]:
    """What Cascade's own ledger books per image: busy device time and human labels only."""
    s1 = compute_dollars(1 / t.stage1_images_per_s, settings.device_price("t4"))
    s2 = t.stage2_fraction * compute_dollars(1 / t.stage2_images_per_s, settings.device_price("l4"))
    return {"stage1": s1, "stage2": s2, "human": t.human_fraction * settings.human_review_cost}


def render(deployments: tuple[Deployment, ...] = (SMALL, LARGE)) -> str:
    """The README's cost tables."""
    settings = Settings.model_construct()  # the defaults, whatever this shell exports
    out: list[str] = []
    for d in deployments:
        items = line_items(d, settings)
        total = sum(v for _, _, v in items)
        images = d.traffic.images_per_day * DAYS_PER_MONTH
        out += [
            f"#### {d.name}: {d.traffic.images_per_day:,.0f} images/day ({images / 1e6:,.0f}M/month)",
            "",
            "| item | arithmetic | $/month |",
            "| --- | --- | ---: |",
            *(f"| {name} | {how} | {value:,.2f} |" for name, how, value in items),
            f"| **total** | | **{total:,.2f}** |",
            "",
        ]
        ledger = ledger_per_image(d.traffic, settings)
        per_k = {k: v * 1000 for k, v in ledger.items()}
        out += [
            f"Infrastructure per 1,000 images: ${total / images * 1000:,.4f}. "
            f"Cascade's ledger per 1,000 images: stage 1 ${per_k['stage1']:.4f}, "
            f"stage 2 ${per_k['stage2']:.4f}, human ${per_k['human']:.2f}.",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
