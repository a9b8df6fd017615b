"""The Settings page: camera (or several on one engine) and its configuration, product (recipe), image storage, the NO PART
alarm, plant links (PLC, MES, OPC UA, plant database: each with "Test connection" and its state), users.

A view of :class:`~ui.settings_model.SettingsModel`; only a technician may change anything;
anyone may test a link's connection (it changes nothing).
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
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from drivers import EXAMPLE_URIS
from inspector.roles import ROLES
from station import LINKS as LINK_SPECS
from station.links import link_name
from ui.line import LINK_TITLES, LINKS, PLC_DOWN_POLICIES, TRIGGERS, link_state_html, link_text
from ui.message_line import MessageLine, message_html
from ui.session import Session
from ui.settings_model import SettingsModel

TRIGGER_TEXT = {"free_run": "free run", "software": "software (demo part feeder)", "hardware": "hardware line"}
PLC_DOWN_TEXT = {"ng": "go on, NG for every part (safe default)", "stop": "stop the line"}
LINK_HINTS = {spec.name: spec.hint for spec in LINK_SPECS}


class SettingsPage(QWidget):
    def __init__(self, model: SettingsModel, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model, self.session = model, session

        self.camera_edit = QLineEdit()
        self.camera_edit.setToolTip(f"camera URI, e.g. {EXAMPLE_URIS}")
        self.more_cameras_edit = QPlainTextEdit()
        self.more_cameras_edit.setPlaceholderText("one camera URI per line (empty: one camera)")
        self.more_cameras_edit.setToolTip("further cameras, inspected beside the first on one engine, in this order")
        self.more_cameras_edit.setTabChangesFocus(True)
        self.more_cameras_edit.setMaximumHeight(70)
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

        self.no_part_alarm = QSpinBox()
        self.no_part_alarm.setRange(0, 100_000)
        self.no_part_alarm.setSuffix(" NO PART frames in a row")
        self.no_part_alarm.setSpecialValueText("off")  # 0 is no count the line takes: it stands for never
        self.no_part_alarm.setToolTip("raises the no_part_run alarm after this many frames in a row without the part\n"
                                      "(a model trained with align); off: never")
        self.no_part_button = QPushButton("Apply NO PART alarm (restarts the line)")
        self.no_part_button.clicked.connect(self._on_no_part_clicked)

        # Plant links: a field each, a "Test connection" button and what it found, the live state.
        self.link_edits: dict[str, QLineEdit] = {}
        self.link_tests: dict[str, QPushButton] = {}
        self.link_results: dict[str, QLabel] = {}
        self.link_states: dict[str, QLabel] = {}
        for name in LINKS:
            edit = QLineEdit()
            edit.setPlaceholderText(LINK_HINTS[name])
            edit.setToolTip(LINK_HINTS[name])
            button = QPushButton("Test connection")
            button.clicked.connect(lambda _=False, n=name: self._on_test_clicked(n))
            result = QLabel()
            result.setWordWrap(True)
            self.link_edits[name], self.link_tests[name], self.link_results[name] = edit, button, result
            self.link_states[name] = QLabel()
        self.plc_down = QComboBox()
        for policy in PLC_DOWN_POLICIES:
            self.plc_down.addItem(PLC_DOWN_TEXT[policy], policy)
        self.links_button = QPushButton("Apply links (restarts the line)")
        self.links_button.clicked.connect(self._on_links_clicked)

        self.user_name = QLineEdit()
        self.user_role = QComboBox()
        self.user_role.addItems(list(ROLES))
        self.user_pin = QLineEdit()
        self.user_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.user_button = QPushButton("Add user")
        self.user_button.clicked.connect(self._on_user_clicked)

        self.message_label = MessageLine()

        camera_box = QGroupBox("Camera")
        cf = QFormLayout(camera_box)
        cf.addRow("Camera", self.camera_edit)
        cf.addRow("More cameras", self.more_cameras_edit)
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
        alarms_box = QGroupBox("Alarms")
        af = QFormLayout(alarms_box)
        af.addRow("NO PART alarm after", self.no_part_alarm)
        af.addRow(self.no_part_button)
        links_box = QGroupBox("Plant links")
        lf = QFormLayout(links_box)
        for name in LINKS:
            row = QHBoxLayout()
            row.addWidget(self.link_edits[name], 1)
            row.addWidget(self.link_tests[name])
            row.addWidget(self.link_states[name])
            lf.addRow(LINK_TITLES[name], row)
            if name == "plc":
                lf.addRow("While the PLC is down", self.plc_down)
            lf.addRow("", self.link_results[name])
        lf.addRow(self.links_button)
        users_box = QGroupBox("Users")
        uf = QFormLayout(users_box)
        uf.addRow("Name", self.user_name)
        uf.addRow("Role", self.user_role)
        uf.addRow("PIN", self.user_pin)
        uf.addRow(self.user_button)

        layout = QVBoxLayout(self)
        for box in (camera_box, product_box, storage_box, alarms_box, links_box, users_box):
            layout.addWidget(box)
        layout.addWidget(self.message_label)
        layout.addStretch(1)

        model.settings_changed.connect(self._on_settings_changed)
        model.message.connect(self.message_label.say)
        model.busy_changed.connect(self._on_busy_changed)
        model.link_tested.connect(self._on_link_tested)
        model.line.status_changed.connect(self._on_settings_changed)
        model.line.links_changed.connect(self._on_links_changed)
        session.user_changed.connect(self._on_user_changed)
        self._busy = False
        self._on_settings_changed()
        self._on_links_changed()
        self._on_user_changed(session.user, session.role)

    def _on_settings_changed(self) -> None:
        line = self.model.line
        widgets = (self.camera_edit, self.more_cameras_edit, self.trigger_combo, self.exposure, self.gain, self.product_combo, self.quota,
                   self.pass_rate, self.no_part_alarm, self.plc_down, *self.link_edits.values())
        for w in widgets:
            w.blockSignals(True)
        self.camera_edit.setText(line.config.cameras[0])
        self.more_cameras_edit.setPlainText("\n".join(line.config.cameras[1:]))
        self.trigger_combo.setCurrentIndex(max(self.trigger_combo.findData(line.config.trigger), 0))
        cam = self.model.camera_settings()
        self.exposure.setValue(float(cam.get("exposure_us") or 0))
        self.gain.setValue(float(cam["gain_db"]) if cam.get("gain_db") is not None else -1)
        self.product_combo.clear()
        self.product_combo.addItems(self.model.products())
        self.product_combo.setCurrentText(line.recipe.product)
        self.quota.setValue(line.config.quota_gb)
        self.pass_rate.setValue(100 * line.config.pass_sample_rate)
        self.no_part_alarm.setValue(line.config.no_part_alarm_after or 0)
        for name in LINKS:
            self.link_edits[name].setText(link_text(line.config, name))
        self.plc_down.setCurrentIndex(max(self.plc_down.findData(line.config.plc_down), 0))
        for w in widgets:
            w.blockSignals(False)
        self.storage_label.setText(f"images in {line.config.image_dir}")

    def _on_camera_clicked(self) -> None:
        exposure = self.exposure.value() or None
        gain = self.gain.value() if self.gain.value() >= 0 else None
        more = self.more_cameras_edit.toPlainText().splitlines()
        self.message_label.guard(lambda: self.model.apply_camera(self.camera_edit.text(), self.trigger_combo.currentData(),
                                                                 exposure, gain, more))

    def _on_product_clicked(self) -> None:
        self.message_label.guard(lambda: self.model.choose_product(self.product_combo.currentText()))

    def _on_storage_clicked(self) -> None:
        self.message_label.guard(lambda: self.model.set_storage(self.quota.value(), self.pass_rate.value() / 100.0))

    def _on_no_part_clicked(self) -> None:
        count = self.no_part_alarm.value()
        self.message_label.guard(lambda: self.model.set_no_part_alarm(count or None))

    def _on_links_clicked(self) -> None:
        edits = self.link_edits
        self.message_label.guard(lambda: self.model.set_links(edits["plc"].text(), self.plc_down.currentData(),
                                                              edits["mqtt"].text(), edits["opcua"].text(),
                                                              edits["plant_db"].text()))

    def _on_test_clicked(self, name: str) -> None:
        self.link_tests[name].setEnabled(False)
        self.link_results[name].setText("testing …")
        self.model.test_link(name, self.link_edits[name].text())

    def _on_link_tested(self, name: str, text: str, ok: bool) -> None:
        self.link_tests[name].setEnabled(True)
        self.link_results[name].setText(message_html(f"{'✓' if ok else '✗'} {text}", not ok))

    def _on_links_changed(self) -> None:
        states = self.model.line.link_states
        for name, label in self.link_states.items():
            # A PLC per camera: each one's state, in camera order (keys plc1, plc2, ...).
            shown = [state for key, state in states.items() if link_name(key) == name]
            label.setText(" ".join(link_state_html("", state).strip() for state in shown))
            label.setVisible(bool(shown))

    def _on_user_clicked(self) -> None:
        self.message_label.guard(lambda: self.model.add_user(self.user_name.text(), self.user_role.currentText(),
                                                             self.user_pin.text()))
        self.user_pin.clear()

    def _on_busy_changed(self, busy: bool) -> None:
        self._busy = busy
        self._on_user_changed(self.session.user, self.session.role)

    def _on_user_changed(self, user: str, role: str) -> None:
        s = self.session
        self.camera_button.setEnabled(s.can("configure_camera") and not self._busy)
        self.product_button.setEnabled(s.can("choose_product") and not self._busy)
        self.storage_button.setEnabled(s.can("set_storage") and not self._busy)
        can_link = s.can("configure_camera")
        self.links_button.setEnabled(can_link and not self._busy)
        self.plc_down.setEnabled(can_link)
        self.no_part_button.setEnabled(can_link and not self._busy)
        self.no_part_alarm.setReadOnly(not can_link)
        for edit in self.link_edits.values():
            edit.setReadOnly(not can_link)
        self.user_button.setEnabled(s.can("manage_users"))
