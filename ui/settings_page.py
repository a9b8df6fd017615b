"""The Settings page: camera and its configuration, product (recipe), image storage, users.

A view of :class:`~ui.settings_model.SettingsModel`; only a technician may change anything.
"""

from __future__ import annotations

from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from drivers import EXAMPLE_URIS
from inspector.errors import InspectorError
from inspector.roles import ROLES
from ui.line import TRIGGERS
from ui.session import Session
from ui.settings_model import SettingsModel
from ui.widgets import FAIL_COLOR

TRIGGER_TEXT = {"free_run": "free run", "software": "software (demo part feeder)", "hardware": "hardware line"}


class SettingsPage(QWidget):
    def __init__(self, model: SettingsModel, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model, self.session = model, session

        self.camera_edit = QLineEdit()
        self.camera_edit.setToolTip(f"camera URI, e.g. {EXAMPLE_URIS}")
        self.trigger_combo = QComboBox()
        for t in TRIGGERS:
            self.trigger_combo.addItem(TRIGGER_TEXT[t], t)
        self.exposure = QDoubleSpinBox()
        self.exposure.setRange(0, 10_000_000)
        self.exposure.setSuffix(" µs")
        self.exposure.setSpecialValueText("camera default")
        self.gain = QDoubleSpinBox()
        self.gain.setRange(-1, 48)
        self.gain.setSuffix(" dB")
        self.gain.setSpecialValueText("camera default")
        self.camera_button = QPushButton("Apply camera (restarts the line)")
        self.camera_button.clicked.connect(self._on_camera_clicked)

        self.product_combo = QComboBox()
        self.product_button = QPushButton("Put product on the line")
        self.product_button.clicked.connect(self._on_product_clicked)

        self.quota = QDoubleSpinBox()
        self.quota.setRange(0.1, 100_000)
        self.quota.setSuffix(" GB")
        self.pass_rate = QDoubleSpinBox()
        self.pass_rate.setRange(0, 100)
        self.pass_rate.setSuffix(" % of passes")
        self.storage_label = QLabel()
        self.storage_button = QPushButton("Apply storage")
        self.storage_button.clicked.connect(self._on_storage_clicked)

        self.user_name = QLineEdit()
        self.user_role = QComboBox()
        self.user_role.addItems(list(ROLES))
        self.user_pin = QLineEdit()
        self.user_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.user_button = QPushButton("Add user")
        self.user_button.clicked.connect(self._on_user_clicked)

        self.message_label = QLabel()
        self.message_label.setWordWrap(True)

        camera_box = QGroupBox("Camera")
        cf = QFormLayout(camera_box)
        cf.addRow("Camera", self.camera_edit)
        cf.addRow("Trigger", self.trigger_combo)
        cf.addRow("Exposure", self.exposure)
        cf.addRow("Gain", self.gain)
        cf.addRow(self.camera_button)
        product_box = QGroupBox("Product (recipe)")
        pf = QHBoxLayout(product_box)
        pf.addWidget(self.product_combo, 1)
        pf.addWidget(self.product_button)
        storage_box = QGroupBox("Image storage")
        sf = QFormLayout(storage_box)
        sf.addRow("Quota", self.quota)
        sf.addRow("Keep images of", self.pass_rate)
        sf.addRow(self.storage_label)
        sf.addRow(self.storage_button)
        users_box = QGroupBox("Users")
        uf = QFormLayout(users_box)
        uf.addRow("Name", self.user_name)
        uf.addRow("Role", self.user_role)
        uf.addRow("PIN", self.user_pin)
        uf.addRow(self.user_button)

        layout = QVBoxLayout(self)
        for box in (camera_box, product_box, storage_box, users_box):
            layout.addWidget(box)
        layout.addWidget(self.message_label)
        layout.addStretch(1)

        model.settings_changed.connect(self._on_settings_changed)
        model.message.connect(self._on_message_changed)
        model.busy_changed.connect(self._on_busy_changed)
        model.line.status_changed.connect(self._on_settings_changed)
        session.user_changed.connect(self._on_user_changed)
        self._busy = False
        self._on_settings_changed()
        self._on_user_changed(session.user, session.role)

    def _on_settings_changed(self) -> None:
        line = self.model.line
        widgets = (self.camera_edit, self.trigger_combo, self.exposure, self.gain, self.product_combo, self.quota, self.pass_rate)
        for w in widgets:
            w.blockSignals(True)
        self.camera_edit.setText(line.config.camera_uri)
        self.trigger_combo.setCurrentIndex(max(self.trigger_combo.findData(line.config.trigger), 0))
        cam = self.model.camera_settings()
        self.exposure.setValue(float(cam.get("exposure_us") or 0))
        self.gain.setValue(float(cam["gain_db"]) if cam.get("gain_db") is not None else -1)
        self.product_combo.clear()
        self.product_combo.addItems(self.model.products())
        self.product_combo.setCurrentText(line.recipe.product)
        self.quota.setValue(line.config.quota_gb)
        self.pass_rate.setValue(100 * line.config.pass_sample_rate)
        for w in widgets:
            w.blockSignals(False)
        self.storage_label.setText(f"images in {line.config.image_dir}")

    def _on_camera_clicked(self) -> None:
        exposure = self.exposure.value() or None
        gain = self.gain.value() if self.gain.value() >= 0 else None
        self._guard(lambda: self.model.apply_camera(self.camera_edit.text(), self.trigger_combo.currentData(), exposure, gain))

    def _on_product_clicked(self) -> None:
        self._guard(lambda: self.model.choose_product(self.product_combo.currentText()))

    def _on_storage_clicked(self) -> None:
        self._guard(lambda: self.model.set_storage(self.quota.value(), self.pass_rate.value() / 100.0))

    def _on_user_clicked(self) -> None:
        self._guard(lambda: self.model.add_user(self.user_name.text(), self.user_role.currentText(), self.user_pin.text()))
        self.user_pin.clear()

    def _on_message_changed(self, text: str, is_error: bool) -> None:
        color = FAIL_COLOR if is_error else "#1b5e20"
        self.message_label.setText(f"<span style='color:{color}'>{text}</span>")

    def _on_busy_changed(self, busy: bool) -> None:
        self._busy = busy
        self._on_user_changed(self.session.user, self.session.role)

    def _on_user_changed(self, user: str, role: str) -> None:
        s = self.session
        self.camera_button.setEnabled(s.can("configure_camera") and not self._busy)
        self.product_button.setEnabled(s.can("choose_product") and not self._busy)
        self.storage_button.setEnabled(s.can("set_storage") and not self._busy)
        self.user_button.setEnabled(s.can("manage_users"))

    def _guard(self, action) -> None:
        try:
            action()
        except InspectorError as exc:
            self._on_message_changed(str(exc), True)
